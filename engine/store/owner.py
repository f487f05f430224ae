"""Who holds a run: ``host:pid``, whether that process still lives, and how to stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's process: assume it lives
    try:
        return pid_alive(int(pid))
    except ValueError:
        return False


def pid_alive(pid: int) -> bool:
    """A process of this machine that runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def interrupt(owner: str) -> None:
    """Ask the process holding a run to stop (SIGTERM), if it runs on this machine."""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and owner != this_process():  # never this very process
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGTERM)
