"""Start a real ``runbook`` process and kill it with SIGKILL at a chosen step."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import runbook_process
from tests.world import clock_held


def state_db() -> Path:
    return Path(os.environ["RUNBOOK_HOME"]) / "state.db"


def step_status(run_id: str, step: str) -> str | None:
    with sqlite3.connect(state_db()) as conn:
        row = conn.execute("SELECT status FROM steps WHERE run_id = ? AND step_id = ?",
                           (run_id, step)).fetchone()
    return row[0] if row else None


def step_attempts(run_id: str, step: str) -> int:
    """How many times ``step`` of ``run_id`` was started (0: never)."""
    with sqlite3.connect(state_db()) as conn:
        row = conn.execute("SELECT attempts FROM steps WHERE run_id = ? AND step_id = ?",
                           (run_id, step)).fetchone()
    return int(row[0]) if row else 0


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen[str],
               timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def kill_during(step: str, *args: str) -> str:
    """Run ``runbook ARGS`` and SIGKILL it while ``step`` runs; return the run id."""
    with clock_held():  # a verification window cannot end before the kill
        proc = runbook_process(*args)
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        run_id = first[2] if first[0] == "resuming" else first[1]
        # Killed as soon as the step's start is recorded: however fast the step is on this
        # machine, it is under way, never already done.
        wait_until(lambda: step_status(run_id, step) == "running", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert step_status(run_id, step) == "running"
    return run_id
