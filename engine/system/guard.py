"""Run a command as the leader of its own process group, and end the whole group when the
engine that started it goes away.

The kernel's parent-death signal reaches only the direct child of a killed engine; an
Ansible playbook is a tree (ansible-playbook, its workers, each module's process, the shell a
task runs), and Ansible's workers start sessions of their own, out of reach of a process
group signal. This small process sits between the engine and that tree: it asks for SIGTERM
when the engine dies, and on SIGTERM, SIGINT or SIGHUP it kills every process of the tree:
its descendants, and every process whose environment carries the same run tags (those
survive a parent's death and a new session). No task of a killed run goes on changing
things while the run is resumed.

It runs as ``python -I -S guard.py ARGV...`` and imports only the standard library, so it
starts in milliseconds. It must not import the engine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


TAGS = ("RUNBOOK_RUN_ID", "RUNBOOK_ENGINE_PID", "RUNBOOK_STEP_ID")


def stop_then_kill(find: Callable[[], set[int]]) -> list[int]:
    """SIGKILL what ``find`` returns (not this process), every one of them stopped first:
    killed one by one, a shell whose child died first would run its next command
    (``sleep 60; touch late``) before its turn. ``find`` is asked again, for what was forked
    before its parent was stopped. Returns the pids stopped and killed."""
    stopped: list[int] = []
    seen = {os.getpid()}
    for _round in range(20):
        found = find() - seen
        if not found:
            break
        seen |= found
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
    for pid in stopped:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return stopped


def _end_tree(*_: object) -> None:
    me = os.getpid()
    tags = {f"{name}={os.environ[name]}".encode() for name in TAGS if name in os.environ}
    stop_then_kill(lambda: tree(me) | (tagged(tags) if tags else set()))
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(137)


def _processes() -> dict[int, int]:
    """Each process of this machine and its parent."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def tree(root: int) -> set[int]:
    """The processes descended from ``root``."""
    parents = _processes()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def tagged(tags: set[bytes]) -> set[int]:
    """The processes whose environment holds every one of ``tags`` (``NAME=value``)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    environ = set(fh.read().split(b"\0"))
            except OSError:
                continue
            if tags <= environ:
                found.add(int(entry))
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: guard.py ARGV...", file=sys.stderr)
        return 2
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _end_tree)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    engine = os.environ.get("RUNBOOK_ENGINE_PID")
    if engine and os.getppid() != int(engine):
        return 137  # the engine died before the parent-death signal was armed
    if sys.platform == "linux":
        # Orphans of the tree (a worker's child whose parent died) become this process's
        # children, so they are still found and ended below rather than running on alone.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    rc = child.wait()
    _end_orphans()
    return rc if rc >= 0 else 128 - rc


def _end_orphans() -> None:
    """What the command left behind when it ended (its own children, orphaned): stopped,
    killed and reaped."""
    me = os.getpid()
    stop_then_kill(lambda: tree(me))
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, 0)[0]:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
