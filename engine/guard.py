"""Run a command as the leader of its own process group, and end the whole group when the
engine that started it goes away.

The kernel's parent-death signal reaches only the direct child of a killed engine; an
Ansible playbook is a tree (ansible-playbook, its workers, each module's process, the shell a
task runs). This small process sits between the engine and that tree: it asks for SIGTERM
when the engine dies, and on SIGTERM, SIGINT or SIGHUP it kills its whole process group, so
no task of a killed run goes on changing things while the run is resumed.

It runs as ``python -I -S guard.py ARGV...`` and imports only the standard library, so it
starts in milliseconds. It must not import the engine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def _end_group(*_: object) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: guard.py ARGV...", file=sys.stderr)
        return 2
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _end_group)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    engine = os.environ.get("RUNBOOK_ENGINE_PID")
    if engine and os.getppid() != int(engine):
        return 137  # the engine died before the parent-death signal was armed
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    rc = child.wait()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
