"""A real ``runbook run`` process, killed with SIGKILL, then resumed."""

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import runbook_process
from tests.helpers import append_step, book, lines
from tests.test_execute import run_id_of


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


SLOW = ("import pathlib,sys,time; pathlib.Path('log.txt').open('a').write('slow-start' + chr(10));"
        " pathlib.Path('in-slow').touch(); time.sleep(float(sys.argv[1]));"
        " pathlib.Path('log.txt').open('a').write('slow-end' + chr(10))")


def slow_book(seconds: str) -> str:
    return book(append_step("a"), append_step("b"),
                f"  - id: slow\n    command: {{argv: [python3, -c, \"{SLOW}\", '{seconds}']}}\n",
                append_step("c"))


def test_sigkill_in_the_middle_of_a_step_then_resume(write_runbook, runbook_cli, isolated):
    path = write_runbook(slow_book("30"))
    proc = runbook_process("run", str(path))
    wait_for(isolated / "in-slow")
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    run_id = run_id_of(out)
    time.sleep(0.2)  # the child dies with its parent
    assert lines(isolated / "log.txt") == ["a", "b", "slow-start"]  # no orphan finished it
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert {s["step_id"]: s["status"] for s in detail["steps"]} == {
        "a": "ok", "b": "ok", "slow": "running"}
    path.write_text(slow_book("0"))
    assert runbook_cli("resume", run_id).code == 2  # the runbook changed: refused
    assert runbook_cli("resume", run_id, "--force").code == 0
    # Each step that had finished before the kill ran exactly once; the interrupted one again.
    assert lines(isolated / "log.txt") == ["a", "b", "slow-start", "slow-start", "slow-end", "c"]


def test_sigkill_at_any_moment_leaves_a_resumable_store(write_runbook, runbook_cli, isolated):
    steps = [f"s{i}" for i in range(8)]
    path = write_runbook(book(*(append_step(s) for s in steps)))
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9, 1.1):
        (isolated / "log.txt").unlink(missing_ok=True)
        proc = runbook_process("run", str(path))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        if not out:
            continue  # killed before the run existed: nothing to resume, nothing recorded
        run_id = run_id_of(out)
        detail = runbook_cli("status", run_id, "--output", "json").json()
        if detail["run"]["status"] != "done":
            assert runbook_cli("resume", run_id).code == 0
        counts = Counter(lines(isolated / "log.txt"))
        assert set(counts) == set(steps)
        # At most the one step in flight at the kill ran twice.
        assert sum(1 for n in counts.values() if n > 1) <= 1
        assert all(n <= 2 for n in counts.values())


def test_sigint_interrupts_with_130_and_resumes(write_runbook, runbook_cli, isolated):
    path = write_runbook(slow_book("30"))
    proc = runbook_process("run", str(path))
    wait_for(isolated / "in-slow")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130
    run_id = run_id_of(out)
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert detail["run"]["status"] == "interrupted"
    assert detail["steps"][-1]["status"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_a_run_being_executed_cannot_be_resumed_twice(sig, write_runbook, runbook_cli, isolated):
    path = write_runbook(slow_book("30"))
    proc = runbook_process("run", str(path))
    wait_for(isolated / "in-slow")
    try:
        run_id = runbook_cli("status", "--output", "json").json()[0]["id"]
        second = runbook_cli("resume", run_id)
        assert second.code == 4
        assert "is being executed by process" in second.err
    finally:
        proc.send_signal(sig)
        proc.communicate(timeout=20)
    assert proc.returncode == 130
