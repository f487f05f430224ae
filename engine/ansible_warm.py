"""The engine's side of the warm Ansible worker (``engine/ansible_host.py``): one per run,
started at the run's first playbook, each playbook run in a child forked from it.

The worker runs under the guard (it ends with the engine, SIGKILL included) and is tagged with
the run; each child is tagged with its step as well, so a timeout, an interrupt or the end of
the step ends the child's whole tree and nothing else. A worker that dies fails the step in
flight with what it printed; the next playbook starts a new one. What the child prints is
ansible-runner's event stream (its ``awx_display`` callback), decoded here into the same job
events and artifacts folder ansible-runner writes (``job_events/``, ``stdout``, ``stderr``,
``rc``, ``status``, ``command``), so the rest of the engine cannot tell the two apart.
"""

from __future__ import annotations

import atexit
import base64
import codecs
import contextlib
import datetime
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine import proc

HOST = Path(__file__).resolve().with_name("ansible_host.py")
_HEADER = struct.Struct("!I")
_EVENT_DATA = re.compile(r"\x1b\[K((?:[A-Za-z0-9+/=]+\x1b\[\d+D)+)\x1b\[K")
_MOVE = re.compile(r"\x1b\[\d+D")
_START_TIMEOUT = 120.0
_AFTER_TIMEOUT = 30.0  # how long a playbook ended at its timeout has to be reported ended


class WorkerDied(Exception):
    """The worker ended while a playbook was handed to it; the message says what it printed."""


@dataclass
class Finished:
    rc: int
    status: str  # ansible-runner's words: successful, failed, timeout


def callback_dir() -> str:
    """ansible-runner's event callback (``awx_display``), used by both ways of running."""
    import importlib.util

    spec = importlib.util.find_spec("ansible_runner")
    assert spec is not None and spec.submodule_search_locations
    return str(Path(spec.submodule_search_locations[0]) / "display_callback" / "callback")


class Worker:
    """A started ``ansible_host.py`` for ``run_id`` with ``env`` as its environment."""

    def __init__(self, run_id: str, env: Mapping[str, str], cwd: str, folder: Path,
                 clients: Iterable[str] | None = None) -> None:
        self.run_id = run_id
        self.env = dict(env)
        self.folder = folder
        path = folder / "worker.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        self._log = open(folder / "worker.log", "w+b")  # noqa: SIM115  (kept while it lives)
        self.process = subprocess.Popen(
            proc.guarded([sys.executable, "-I", str(HOST), str(path)]
                         + ([] if clients is None else [",".join(clients)])),
            env=self.env, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True)
        try:
            self.sock = self._accept(listener)
        finally:
            listener.close()
        self._lines = b""

    def _accept(self, listener: socket.socket) -> socket.socket:
        listener.settimeout(0.1)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                sock, _ = listener.accept()
                sock.settimeout(None)
                return sock
            except TimeoutError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise WorkerDied(self._said()) from None

    def _said(self) -> str:
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip()
        return text[-2000:] or "it printed nothing"

    def _ending(self) -> str:
        """How the worker ended, and what it printed."""
        try:
            rc = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return self._said()
        how = f"exit {rc}"
        with contextlib.suppress(ValueError):  # the guard exits 128+N for a kill by signal N
            if rc < 0 or rc > 128:
                how = f"killed by {signal.Signals(-rc if rc < 0 else rc - 128).name}"
        return f"({how}): {self._said()}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, step_id: str,
            on_output: Callable[[str], None], timeout: float | None) -> Finished:
        """Run ``argv`` (an ``ansible-playbook`` command line) in a child; ``on_output`` gets
        what it prints as it comes. The child's tree is ended on a timeout and on any
        exception (an interrupt included) before this returns or raises."""
        body = json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode()
        request = _HEADER.pack(len(body)) + body
        pid: int | None = None
        rc: int | None = None
        timed_out = False
        deadline = None if timeout is None else time.monotonic() + timeout
        selector = selectors.DefaultSelector()
        # A character split between two reads is decoded whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read_end, write_end = os.pipe()
        try:
            try:
                # The pipe goes with the first bytes; the rest of a long request after them.
                sent = socket.send_fds(self.sock, [request[:4096]], [write_end])
                self.sock.sendall(request[sent:])
            except OSError as exc:
                raise WorkerDied(f"({exc.strerror}): {self._said()}") from exc
            finally:
                os.close(write_end)
            selector.register(read_end, selectors.EVENT_READ)
            selector.register(self.sock, selectors.EVENT_READ)
            output_open = True
            while output_open or rc is None:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    if not timed_out:
                        timed_out = True
                        self._end_child(pid, step_id)
                        deadline = now + _AFTER_TIMEOUT  # for its end to be reported
                    else:
                        raise WorkerDied("it did not report the end of a playbook stopped "
                                         "at its timeout")
                ready = selector.select(None if deadline is None else
                                        max(0.0, deadline - time.monotonic()))
                for key, _ in ready:
                    if key.fileobj == read_end:
                        chunk = os.read(read_end, 65536)
                        if chunk:
                            on_output(decoder.decode(chunk))
                        else:
                            on_output(decoder.decode(b"", final=True))
                            output_open = False
                            selector.unregister(read_end)
                        continue
                    data = self.sock.recv(65536)
                    if not data:
                        raise WorkerDied(self._ending())
                    self._lines += data
                    while b"\n" in self._lines:
                        line, self._lines = self._lines.split(b"\n", 1)
                        message = json.loads(line)
                        if "started" in message:
                            pid = int(message["started"])
                            if timed_out:  # started after its time was up
                                self._end_child(pid, step_id)
                        elif "ended" in message:
                            rc = int(message["rc"])
                            # What the playbook left running (a task's background process
                            # holding its output open) ends with it.
                            proc.end_processes_of(self.run_id, step_id)
        except BaseException:
            self._end_child(pid, step_id)
            # Its answers for this playbook would be read by the next one; and a playbook
            # it forked but did not report yet must not go on: the worker's tree ends now.
            self.close(at_once=True)
            raise
        finally:
            selector.close()
            os.close(read_end)
        if timed_out:
            return Finished(rc, "timeout")
        return Finished(rc, "successful" if rc == 0 else "failed")

    def _end_child(self, pid: int | None, step_id: str) -> None:
        if pid is not None:
            proc.end_tree(pid)
        proc.end_processes_of(self.run_id, step_id)

    def close(self, *, at_once: bool = False) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self.sock.close()
        if at_once and self.process.poll() is None:
            proc.end_tree(self.process.pid)
        if self.process.poll() is None:
            # Without its socket the worker returns; the guard ends what is left after that.
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.kill(self.process.pid, signal.SIGTERM)
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class _Pool:
    workers: dict[tuple[str, str], Worker] = field(default_factory=dict)


_pool = _Pool()


def worker_for(run_id: str, env: Mapping[str, str], cwd: str,
               clients: Iterable[str] | None = None) -> Worker:
    """The run's warm worker for this environment and working folder, started if need be
    (or if the last one died). ``clients`` (kubernetes, aws): those its playbooks use, which a
    new worker loads ahead; None when not known."""
    key = (run_id, json.dumps([sorted(env.items()), cwd, _config_files(env, cwd)]))
    worker = _pool.workers.get(key)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        worker.close()
    for other in [k for k in _pool.workers if k[0] != run_id or k == key]:
        _pool.workers.pop(other).close()  # one run's worker at a time
    folder = Path(tempfile.mkdtemp(prefix=proc.scratch_prefix(run_id) + "ansible-",
                                   dir=proc.scratch_root()))
    try:
        from engine.steps.ansible import home_env

        worker = Worker(run_id, {**env, **home_env(folder)}, cwd, folder, clients)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _pool.workers[key] = worker
    return worker


def _config_files(env: Mapping[str, str], cwd: str) -> list[tuple[str, int, int]]:
    """The configuration files Ansible would read, as they are now: a worker read them when
    it started, so a changed one needs a new worker."""
    found = []
    for path in (env.get("ANSIBLE_CONFIG", ""), os.path.join(cwd, "ansible.cfg"),
                 os.path.expanduser("~/.ansible.cfg"), "/etc/ansible/ansible.cfg"):
        with contextlib.suppress(OSError):
            if path:
                st = os.stat(path)
                found.append((path, st.st_mtime_ns, st.st_size))
    return found


def close_all(*, at_once: bool = False) -> None:
    """End every warm worker of this engine (at the end of a run, and at exit); ``at_once``:
    without waiting for one still loading to notice."""
    while _pool.workers:
        _pool.workers.popitem()[1].close(at_once=at_once)


atexit.register(close_all)


class EventStream:
    """ansible-runner's reading of ``awx_display`` output: each encoded event is merged with
    the partial data the callback left in ``job_events/``, handed to ``handler`` and written
    to ``job_events/COUNTER-UUID.json``; the plain text goes to ``stdout``."""

    def __init__(self, artifact_dir: Path, ident: str,
                 handler: Callable[[dict[str, Any]], bool]) -> None:
        self.dir = artifact_dir
        self.ident = ident
        self.handler = handler
        (artifact_dir / "job_events").mkdir(parents=True, exist_ok=True)
        self._stdout: IO[str] = open(artifact_dir / "stdout", "w", encoding="utf-8")  # noqa: SIM115
        self._buffer = ""
        self._current: dict[str, Any] | None = None
        self._counter = 0
        self._line = 0

    def feed(self, text: str) -> None:
        self._buffer += text
        if "\x1b[K" in self._buffer:
            while match := _EVENT_DATA.search(self._buffer):
                try:
                    data = json.loads(base64.b64decode(_MOVE.sub("", match.group(1))))
                except ValueError:
                    data = {}
                self._emit(self._buffer[:match.start()], data)
                self._buffer = self._buffer[match.end():]
        if self._current is None and "\n" in self._buffer and "\x1b[K" not in self._buffer:
            complete, _, rest = self._buffer.rpartition("\n")
            self._emit(complete + "\n")
            self._buffer = rest

    def close(self) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = ""
        self._stdout.close()

    def _emit(self, text: str, following: dict[str, Any] | None = None) -> None:
        if self._current is not None:
            event, chunks = self._current, [text]
        elif text:
            event, chunks = {"event": "verbose"}, text.splitlines(True)
        else:
            event, chunks = {}, []
        for chunk in chunks:
            if event.get("event") == "verbose":
                event["uuid"] = str(uuid.uuid4())
            self._counter += 1
            lines = chunk.count("\n")
            event.update(counter=self._counter, stdout=chunk.rstrip("\n\r"),
                         start_line=self._line, end_line=self._line + lines)
            self._line += lines
            self._record(dict(event))
        self._current = following if following and following.get("uuid") else None

    def _record(self, event: dict[str, Any]) -> None:
        if event["stdout"]:
            self._stdout.write(event["stdout"] + "\n")
            self._stdout.flush()
        if "uuid" not in event:
            return
        event["runner_ident"] = self.ident
        partial = self.dir / "job_events" / f"{event['uuid']}-partial.json"
        with contextlib.suppress(OSError, ValueError):
            event.update(json.loads(partial.read_text(encoding="utf-8")))
            partial.unlink()
        event.setdefault("created", datetime.datetime.now(datetime.UTC).isoformat())
        if self.handler(event):
            path = self.dir / "job_events" / f"{event['counter']}-{event['uuid']}.json"
            tmp = path.with_name(path.name + ".tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                      encoding="utf-8") as fh:
                json.dump(event, fh)
            tmp.rename(path)
