"""A warm Ansible worker as the engine sees it: the ``host.py`` process it started, its socket,
and one request at a time (a playbook, or a call such as sending a message) run in a child
forked from it, whose output comes back as it is printed. See ``warm.py`` for the whole.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.system import proc

HOST = Path(__file__).resolve().with_name("host.py")


# The files the host loads by their paths (it imports nothing of the engine).
HOST_FILES = (HOST, HOST.with_name("apprise_send.py"), HOST.with_name("host_ansible.py"),
              HOST.parents[2] / "system" / "guard.py")


_HEADER = struct.Struct("!I")


_START_TIMEOUT = 120.0


_AFTER_TIMEOUT = 30.0  # how long a playbook ended at its timeout has to be reported ended


class WorkerDied(Exception):
    """The worker ended while a playbook was handed to it; the message says what it printed."""


class NotTaken(WorkerDied):
    """The worker ended before it answered this connection: nothing of the request ran (a
    kept worker that ended idle as the engine connected), so it may be sent again."""


class CallTimedOut(WorkerDied):
    """A call in the worker did not end within its time: what it did is not known."""


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
    """A started ``host.py`` for ``run_id`` with ``env`` as its environment."""

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
        return _how_ended(self.process, self._said())

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, step_id: str,
            on_output: Callable[[str], None], timeout: float | None) -> Finished:
        """Run ``argv`` (an ``ansible-playbook`` command line) in a child; ``on_output`` gets
        what it prints as it comes. The child's tree is ended on a timeout and on any
        exception (an interrupt included) before this returns or raises."""
        return self._request({"argv": list(argv), "env": dict(env), "cwd": cwd}, step_id,
                             on_output, timeout)

    def call(self, name: str, args: Sequence[Any], step_id: str, timeout: float) -> Any:
        """One of the worker's functions (``apprise.known``, ``apprise.send``) in a child of
        its own, with this engine's environment: its answer. WorkerDied if it had none."""
        output: list[str] = []
        env = {**os.environ, **proc.tags(self.run_id), proc.STEP_TAG: step_id}
        finished = self._request({"call": name, "args": list(args), "env": env,
                                  "cwd": os.getcwd()}, step_id, output.append, timeout)
        text = "".join(output)
        last = text.rstrip().rpartition("\n")[2]
        if finished.status == "successful" and last.startswith('{"answer": '):
            return json.loads(last)["answer"]
        said = text.strip()[-2000:] or "it printed nothing"
        if finished.status == "timeout":
            raise CallTimedOut(f"(no answer within {timeout:g} s): {said}")
        raise WorkerDied(f"({finished.status}): {said}")

    def _request(self, fields: Mapping[str, Any], step_id: str,
                 on_output: Callable[[str], None], timeout: float | None) -> Finished:
        body = json.dumps(fields).encode()
        request = _HEADER.pack(len(body)) + body
        pid: int | None = None
        rc: int | None = None
        timed_out = False
        deadline = None if timeout is None else time.monotonic() + timeout
        selector = selectors.DefaultSelector()
        # A character split between two reads is decoded whole.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        read_end, write_end = os.pipe()
        # Held here while the playbook runs: when it closes, the child ends its tree.
        lifeline, held = os.pipe()
        try:
            try:
                # The pipes go with the first bytes; the rest of a long request after them.
                sent = socket.send_fds(self.sock, [request[:4096]], [write_end, lifeline])
                self.sock.sendall(request[sent:])
            except OSError as exc:
                raise self._died(pid, f"({exc.strerror}): {self._said()}") from exc
            finally:
                os.close(write_end)
                os.close(lifeline)
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
                    try:
                        data = self.sock.recv(65536)
                    except OSError as exc:  # reset: it ended with the request unread
                        raise self._died(pid, self._ending()) from exc
                    if not data:
                        raise self._died(pid, self._ending())
                    self._lines += data
                    while b"\n" in self._lines:
                        line, self._lines = self._lines.split(b"\n", 1)
                        message = json.loads(line)
                        if "ready" in message:
                            self.greeted = True
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
            os.close(held)
        if timed_out:
            return Finished(rc, "timeout")
        return Finished(rc, "successful" if rc == 0 else "failed")

    def _died(self, pid: int | None, said: str) -> WorkerDied:
        """The worker's end, as the request saw it: before it ever answered this connection,
        nothing of the request ran."""
        if pid is None and not getattr(self, "greeted", False):
            return NotTaken(said)
        return WorkerDied(said)

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
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:  # a guard that does not end: its tree now
                    proc.end_tree(self.process.pid)
                    self.process.wait()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _how_ended(process: subprocess.Popen[bytes], said: str) -> str:
    try:
        rc = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return said
    how = f"exit {rc}"
    with contextlib.suppress(ValueError):  # the guard exits 128+N for a kill by signal N
        if rc < 0 or rc > 128:
            how = f"killed by {signal.Signals(-rc if rc < 0 else rc - 128).name}"
    return f"({how}): {said}"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that runs: not gone, not a zombie (a killed worker whose
    other threads are still ending, or that its parent has not reaped yet, is one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return state not in (b"Z", b"X")


def _tail_of(log: Path) -> str:
    """The end of what a kept worker printed (its log is shared by the workers kept there)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            text = fh.read().decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text[-2000:] or "it printed nothing"


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
