"""The engine's side of the warm Ansible worker (``engine/steps/ansible/host.py``), each playbook
run in a child forked from it.

By default the worker is kept warm between runs (``RUNBOOK_KEEP_WARM`` seconds after the last
run that used it, 900 unless set; ``0``: one worker per run, ended with it): the next
command's playbooks start at once instead of after the worker's second of loading. One per
user and Ansible configuration (its environment's ``ANSIBLE_*`` and locale, the
``ansible.cfg`` it would read, the installed Ansible and clients): a run whose configuration
differs gets a worker of its own. It listens in a folder only its user can enter and answers
only that user's processes; it keeps no run's environment or credentials, which each request
brings for its own child.

Each child holds a lifeline from its engine and is tagged with its run and step: a timeout,
an interrupt, the end of the step or the engine's death (SIGKILL included) ends the child's
whole tree and nothing else. A worker that dies fails the step in flight with what it
printed; the next playbook starts a new one. What the child prints is
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
import hashlib
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import socket
import stat
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

from engine.steps.ansible import policy
from engine.system import proc

HOST = Path(__file__).resolve().with_name("host.py")
# The files the host loads by their paths (it imports nothing of the engine).
HOST_FILES = (HOST, HOST.with_name("apprise_send.py"),
              HOST.parents[2] / "system" / "guard.py")
_HEADER = struct.Struct("!I")
_EVENT_DATA = re.compile(r"\x1b\[K((?:[A-Za-z0-9+/=]+\x1b\[\d+D)+)\x1b\[K")
_MOVE = re.compile(r"\x1b\[\d+D")
_START_TIMEOUT = 120.0
_AFTER_TIMEOUT = 30.0  # how long a playbook ended at its timeout has to be reported ended
KEEP_WARM = "RUNBOOK_KEEP_WARM"
_KEEP_WARM_DEFAULT = 900.0


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


class Agent(Worker):
    """This run's connection to the worker kept warm for its user and configuration."""

    def __init__(self, run_id: str, env: Mapping[str, str], sock: socket.socket, pid: int,
                 log: Path, process: subprocess.Popen[bytes] | None) -> None:
        self.run_id = run_id
        self.env = dict(env)
        self.sock = sock
        self.pid = pid
        self.log = log
        self.started = process  # when this engine started it
        self._lines = b""

    def alive(self) -> bool:
        if self.sock.fileno() == -1:
            return False
        if self.started is not None and self.started.poll() is not None:
            return False  # this engine's child, ended: a pid that still answers, unreaped
        return _running(self.pid)

    def _said(self) -> str:
        return _tail_of(self.log)

    def _ending(self) -> str:
        if self.started is not None:
            return _how_ended(self.started, self._said())
        return f"(the worker kept warm, pid {self.pid}, ended): {self._said()}"

    def close(self, *, at_once: bool = False) -> None:
        # The worker stays for the runs to come; its child, if one runs, ends by its
        # lifeline, already closed.
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.started is not None:
            self.started.poll()  # reaped if it ended


@dataclass
class _Pool:
    workers: dict[tuple[str, str], Worker] = field(default_factory=dict)


_pool = _Pool()


def current() -> Worker | None:
    """The warm worker of the run in progress, if it has one and it is alive."""
    return next((w for w in _pool.workers.values() if w.alive()), None)


def keep_warm_problem() -> str | None:
    """What is wrong with ``RUNBOOK_KEEP_WARM``, if anything."""
    value = os.environ.get(KEEP_WARM, "")
    try:
        if value and not 0 <= float(value) <= 7 * 86400:
            raise ValueError
    except ValueError:
        return (f"{KEEP_WARM} is {value!r}: the seconds the Ansible worker is kept warm "
                "after a run (0: a worker per run), at most a week")
    return None


def keep_warm() -> float:
    value = os.environ.get(KEEP_WARM, "")
    if not value or keep_warm_problem():
        return _KEEP_WARM_DEFAULT
    return float(value)


def worker_for(run_id: str, env: Mapping[str, str], cwd: str,
               clients: Iterable[str] | None = None) -> Worker:
    """The run's warm worker for this environment and working folder: the one kept warm for
    this user and configuration (started if need be), or with ``RUNBOOK_KEEP_WARM=0`` one of
    the run's own. ``clients`` (kubernetes, aws, ecr, rds): those its playbooks use, which a
    new worker loads first; None when not known."""
    place = None
    if keep_warm() > 0:
        with contextlib.suppress(OSError):  # /dev/shm full or read-only: a worker per run
            place = _kept_place(env, cwd)
    key = (run_id, str(place) if place is not None else
           json.dumps([sorted(env.items()), cwd, _config_files(env, cwd)]))
    worker = _pool.workers.get(key)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        worker.close()
    for other in [k for k in _pool.workers if k[0] != run_id or k == key]:
        _pool.workers.pop(other).close()  # one run's worker at a time
    if place is not None:
        try:
            worker = _kept(run_id, place, env, cwd, clients,
                           policy.home_env(place.with_suffix("")))
        except OSError as exc:
            raise WorkerDied(f"the worker kept at {place} could not start: "
                             f"{exc.strerror or exc}") from exc
    else:
        folder = Path(tempfile.mkdtemp(prefix=proc.scratch_prefix(run_id) + "ansible-",
                                       dir=proc.scratch_root()))
        try:
            worker = Worker(run_id, {**env, **policy.home_env(folder)}, cwd, folder, clients)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    _pool.workers[key] = worker
    return worker


def _kept_place(env: Mapping[str, str], cwd: str) -> Path | None:
    """Where the worker kept for this user and configuration listens: a socket in a folder
    only this user can enter, named by a digest of all a worker reads as it loads. None when
    that folder is not safely this user's (another user made it, or it is open to others)."""
    folder = proc.scratch_root() / f"runbook-warm-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    material = json.dumps([os.getuid(), sys.executable,
                           *(_stamp(path) for path in HOST_FILES),
                           [_stamp(_origin(name)) for name in ("ansible", "ansible_runner",
                                                               "kubernetes", "boto3",
                                                               "botocore", "apprise")],
                           sorted(policy.worker_env(env).items()), _config_files(env, cwd)])
    place = folder / (hashlib.sha256(material.encode()).hexdigest()[:24] + ".sock")
    return place if len(str(place)) < 100 else None  # a socket's path is short


def _origin(package: str) -> str:
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            return spec.origin
    return ""


def _stamp(path: str | Path) -> list[Any]:
    try:
        st = os.stat(path)
    except OSError:
        return [str(path)]
    return [str(path), st.st_mtime_ns, st.st_size]


def _kept(run_id: str, place: Path, env: Mapping[str, str], cwd: str,
          clients: Iterable[str] | None, home: Mapping[str, str]) -> Agent:
    """A connection to the worker kept at ``place``, started first if none answers there."""
    log = place.with_suffix(".log")
    process = None
    for _attempt in range(3):
        found = _connect(place)
        if found is not None:
            return Agent(run_id, {**env, **home}, *found, log, process)
        process = _start_kept(place, {**policy.worker_env(env), **home}, cwd, clients, log)
        if process.returncode is not None:  # another worker listened there first
            process = None
    raise WorkerDied(f"the worker at {place} does not answer: {_tail_of(log)}")


def _connect(place: Path) -> tuple[socket.socket, int] | None:
    """A connection to the worker listening at ``place`` and its pid; None if none does.
    The worker may still be loading: the first request waits for it in the socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(place))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            raise ConnectionRefusedError  # never talk to another user's process
        return sock, pid
    except OSError:
        sock.close()
        return None


def _start_kept(place: Path, env: Mapping[str, str], cwd: str,
                clients: Iterable[str] | None, log: Path) -> subprocess.Popen[bytes]:
    """Start a worker kept at ``place``, in a session of its own: it outlives this engine.
    Returns once it listens there (or found another worker listening first)."""
    Path(env["ANSIBLE_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", str(HOST), "--serve", str(place), f"{keep_warm():g}",
             ",".join(clients or ())],
            env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=fd, start_new_session=True)
    finally:
        os.close(fd)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(_START_TIMEOUT):
            proc.end_tree(process.pid)
    line = process.stdout.readline()
    process.stdout.close()
    if not line.startswith((b"listening", b"exists")):
        process.wait()
        raise WorkerDied(f"(exit {process.returncode}): {_tail_of(log)}")
    if line.startswith(b"exists"):
        process.wait()
    return process


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
