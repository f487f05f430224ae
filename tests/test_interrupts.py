"""Ctrl-C, SIGTERM and `runbook abort` on real `runbook` processes: an interrupt is never a
failure, and an aborted run stays aborted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.store.owner import pid_alive
from tests.conftest import REPO, runbook_process
from tests.helpers import append_step, book, lines
from tests.runbooks.killing import step_status, wait_until
from tests.test_execute import run_id_of
from tests.test_resume_kill import wait_for

PLAYBOOK = REPO / "tests" / "playbooks" / "echo-values.yml"
# Writes the pid of its guard (its parent) and its own, then waits until ./go exists.
# (written aside and renamed, so a reader never sees the file before its content)
HOLD = ("import os,pathlib,time;"
        " pathlib.Path('pids.new').write_text(f'{os.getppid()} {os.getpid()}');"
        " os.replace('pids.new', 'pids');"
        " pathlib.Path('log.txt').open('a').write('hold' + chr(10));"
        " [time.sleep(0.05) for _ in iter(lambda: pathlib.Path('go').exists(), True)]")
ON_FAILURE = "    on_failure:\n" + append_step("cleanup").replace("  - ", "      - ", 1) \
    .replace("\n    command", "\n        command")
LOCKED = "metadata: {name: book, lock: live}\n"


def playbook_step(step_id: str) -> str:
    return (f"  - id: {step_id}\n    ansible:\n      playbook: {PLAYBOOK}\n"
            f"      extravars: {{dest: '{step_id}.json', values: {{reason: '{step_id}'}}}}\n")


def hold_step(step_id: str = "hold", extra: str = ON_FAILURE) -> str:
    return f"  - id: {step_id}\n    command: {{argv: [python3, -c, \"{HOLD}\"]}}\n{extra}"


def started(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = runbook_process(*args)
    assert proc.stdout is not None
    return proc, run_id_of(proc.stdout.readline())


def pids(isolated: Path) -> tuple[int, int]:
    wait_for(isolated / "pids")
    guard, child = (int(p) for p in (isolated / "pids").read_text().split())
    return guard, child


def detail(runbook_cli, run_id: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    found = runbook_cli("status", run_id, "--output", "json").json()
    return {"run": found["run"]["status"],
            "steps": {s["step_id"]: s["status"] for s in found["steps"]}}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_a_command_after_a_playbook_interrupts_and_resumes(
        sig, write_runbook, runbook_cli, isolated):
    # The engine's handlers are still in place after ansible-runner ran a playbook.
    path = write_runbook(book(playbook_step("play"), hold_step(), append_step("after")))
    proc, run_id = started("run", str(path))
    guard, child = pids(isolated)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "✗" not in out and "failed" not in out
    assert not pid_alive(child) and not pid_alive(guard)  # the step's processes ended
    assert detail(runbook_cli, run_id) == {
        "run": "interrupted", "steps": {"play": "ok", "hold": "interrupted"}}
    assert lines(isolated / "log.txt") == ["hold"]  # its on_failure step did not run
    (isolated / "go").touch()
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert "✓ play done: done in an earlier attempt" in done.out
    assert lines(isolated / "log.txt") == ["hold", "hold", "after"]


def test_a_signal_in_a_playbook_interrupts_it(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("a"), playbook_step("play") + ON_FAILURE,
                              append_step("b")))
    proc, run_id = started("run", str(path))
    wait_until(lambda: step_status(run_id, "play") == "running", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert detail(runbook_cli, run_id) == {
        "run": "interrupted", "steps": {"a": "ok", "play": "interrupted"}}
    assert runbook_cli("resume", run_id).code == 0
    assert lines(isolated / "log.txt") == ["a", "b"]  # never the cleanup
    assert detail(runbook_cli, run_id) == {
        "run": "done", "steps": {"a": "ok", "play": "ok", "b": "ok"}}


def test_a_signal_in_a_wait_interrupts_it(write_runbook, runbook_cli, isolated):
    wait = ("  - id: until-go\n    wait: {until: 'poll.rc == 0', argv: [test, -e, go], "
            "timeout: 600, interval: 0.1}\n" + ON_FAILURE)
    path = write_runbook(book(append_step("a"), wait, append_step("b")))
    proc, run_id = started("run", str(path))
    wait_until(lambda: step_status(run_id, "until-go") == "running", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert detail(runbook_cli, run_id)["steps"]["until-go"] == "interrupted"
    (isolated / "go").touch()
    assert runbook_cli("resume", run_id).code == 0
    assert lines(isolated / "log.txt") == ["a", "b"]


def test_a_signal_while_a_failed_attempt_waits_to_retry_interrupts_the_step(
        write_runbook, runbook_cli, isolated):
    failing = ("  - id: flaky\n    command: {argv: [python3, -c, \"import pathlib; "
               "pathlib.Path('tried').touch(); raise SystemExit(1)\"]}\n"
               "    retries: 1\n    delay: 600\n" + ON_FAILURE)
    path = write_runbook(book(failing, append_step("b")))
    proc, run_id = started("run", str(path))
    wait_for(isolated / "tried")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert detail(runbook_cli, run_id) == {"run": "interrupted",
                                           "steps": {"flaky": "interrupted"}}
    assert lines(isolated / "log.txt") == []


def signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits to be handled by ``pid`` (a stopped process keeps it pending)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [int(line.split()[1], 16) for line in status.splitlines()
             if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (sig - 1)) for mask in masks)


def test_a_second_ctrl_c_while_stopping_ends_at_once_still_interrupted(
        write_runbook, runbook_cli, isolated):
    path = write_runbook(book(hold_step()))
    proc, run_id = started("run", str(path))
    guard, child = pids(isolated)
    os.kill(guard, signal.SIGSTOP)  # a child slow to go: the engine waits for it
    try:
        proc.send_signal(signal.SIGINT)
        # The engine has asked the step's guard to end its tree and is waiting for it.
        wait_until(lambda: signal_pending(guard, signal.SIGTERM), proc, timeout=30)
        second = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        # Well before the guard's 10 s grace would have run out.
        assert time.monotonic() - second < 5
    finally:
        if pid_alive(guard):
            os.kill(guard, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert not pid_alive(child)
    assert detail(runbook_cli, run_id) == {"run": "interrupted",
                                           "steps": {"hold": "interrupted"}}
    assert lines(isolated / "log.txt") == ["hold"]


def journal_kinds(runbook_cli, run_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    from engine import api

    return [f"{j.kind}:{j.data.get('status', '')}" for j in api.journal()
            if j.run_id == run_id]


def test_abort_stops_the_executing_process_and_the_run_stays_aborted(
        write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("a"), hold_step(), append_step("b"))
                         .replace("metadata: {name: book}\n", LOCKED))
    proc, run_id = started("run", str(path))
    guard, child = pids(isolated)
    aborted = runbook_cli("abort", run_id, "--by", "erin")
    assert aborted.code == 0, aborted.err
    assert f"run {run_id} aborted; process" in aborted.out and "stopped" in aborted.out
    # The abort returned once the process had stopped: it is gone, or about to exit.
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 1, out + err
    assert not pid_alive(child) and not pid_alive(guard)
    assert detail(runbook_cli, run_id) == {"run": "aborted",
                                           "steps": {"a": "ok", "hold": "interrupted"}}
    assert runbook_cli("lock", "list", "--output", "json").json() == []
    kinds = journal_kinds(runbook_cli, run_id)
    # Nothing was written over the abort, and the lock was let go only after the step ended.
    assert [k for k in kinds if k.startswith("run-status")] == ["run-status:aborted"]
    assert kinds.index("unlock:") > kinds.index("step:interrupted")
    refused = runbook_cli("resume", run_id)
    assert refused.code == 2 and f"run {run_id} is aborted" in refused.err
    assert lines(isolated / "log.txt") == ["a", "hold"]


def test_an_abort_reports_a_process_that_does_not_stop_and_keeps_its_lock(
        write_runbook, runbook_cli, isolated):
    from engine import api

    path = write_runbook(book(hold_step()).replace("metadata: {name: book}\n", LOCKED))
    proc, run_id = started("run", str(path))
    pids(isolated)
    proc.send_signal(signal.SIGSTOP)  # it cannot act on the abort until it goes on
    try:
        result = api.abort(run_id=run_id, by="erin", wait=0.5)
        assert not result.stopped and result.holder and result.run.status == "aborted"
        assert [lock.run_id for lock in api.locks()] == [run_id]  # it still executes the run
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 1, out + err
    # Once it went on, it saw the abort, stopped, and released the lock itself.
    assert api.locks() == []
    assert detail(runbook_cli, run_id) == {"run": "aborted", "steps": {"hold": "interrupted"}}
