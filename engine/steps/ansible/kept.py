"""The worker kept warm between runs (``RUNBOOK_KEEP_WARM``): one per user and Ansible
configuration, listening in a folder only its user can enter, found by a digest of all it read
as it loaded; an engine connects to it, or starts it, and leaves it running after the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import selectors
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.steps.ansible import policy
from engine.steps.ansible.worker import (
    _START_TIMEOUT,
    HOST,
    HOST_FILES,
    Worker,
    WorkerDied,
    _config_files,
    _how_ended,
    _running,
    _tail_of,
)
from engine.system import proc

KEEP_WARM = "RUNBOOK_KEEP_WARM"


_KEEP_WARM_DEFAULT = 900.0


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
