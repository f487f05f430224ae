"""Resume, approve and abort check a run's status in the transaction that acts on it: a
command held just before that transaction, while another one finishes or aborts the run,
then sees what happened and refuses, and nothing runs twice.

The held command is a real ``runbook`` process stopped at its claim point through a FIFO
(``RUNBOOK_TEST_PAUSE_BEFORE_CLAIM``): opening the FIFO's writing end succeeds only once the
process is there, and closing it lets the process go on."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from engine.system.pause import PAUSE_BEFORE_CLAIM
from tests.conftest import runbook_process
from tests.helpers import append_step, book, lines
from tests.store.test_store import store_location


@pytest.fixture(params=["sqlite", "postgres"])
def shared_state(request, tmp_path, monkeypatch) -> str:
    location = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    return location


class Held:
    """A ``runbook`` process standing at its claim point until released."""

    def __init__(self, fifo: Path, *args: str) -> None:
        os.mkfifo(fifo)
        self.proc = runbook_process(*args, env={PAUSE_BEFORE_CLAIM: str(fifo)})
        deadline = time.monotonic() + 60
        while True:  # the writing end opens once the process has opened the reading end
            try:
                self.fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the process never reached its claim point"
            time.sleep(0.02)

    def release(self) -> subprocess.CompletedProcess[str]:
        os.close(self.fd)
        out, err = self.proc.communicate(timeout=60)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


LOCKED = "metadata: {name: book, lock: live}\n"


def waiting_run(write_runbook, runbook_cli) -> str:  # type: ignore[no-untyped-def]
    """A run on live waiting for its sign-off, with two steps after it that leave a trace."""
    text = book("  - id: ok\n    approval: {prompt: go}\n", append_step("a"), append_step("b"))
    path = write_runbook(text.replace("metadata: {name: book}\n", LOCKED))
    first = runbook_cli("run", str(path))
    assert first.code == 3, first.err
    return str(first.out.split()[1])


def events(runbook_cli, run_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["kind"] for e in runbook_cli("status", run_id, "--output", "json").json()["events"]]


def test_a_resume_held_while_another_finishes_the_run_refuses(shared_state, write_runbook,
                                                             runbook_cli, isolated, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    held = Held(tmp_path / "hold", "resume", run_id)

    assert runbook_cli("resume", run_id).code == 0
    late = held.release()

    assert late.returncode == 2, late
    assert f"run {run_id} is done" in late.stderr
    assert lines(isolated / "log.txt") == ["a", "b"]  # no step ran twice
    assert runbook_cli("lock", "list", "--output", "json").json() == []  # not taken again
    assert events(runbook_cli, run_id).count("resume") == 1


def test_a_resume_held_while_the_run_is_aborted_refuses(shared_state, write_runbook,
                                                       runbook_cli, isolated, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    held = Held(tmp_path / "hold", "resume", run_id)

    assert runbook_cli("abort", run_id, "--by", "erin").code == 0
    late = held.release()

    assert late.returncode == 2, late
    assert f"run {run_id} is aborted" in late.stderr
    assert lines(isolated / "log.txt") == []
    assert runbook_cli("lock", "list", "--output", "json").json() == []
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert detail["run"]["status"] == "aborted"


def test_an_abort_held_while_the_run_finishes_leaves_it_done(shared_state, write_runbook,
                                                            runbook_cli, isolated, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    held = Held(tmp_path / "hold", "abort", run_id, "--by", "erin")

    assert runbook_cli("resume", run_id).code == 0
    late = held.release()

    assert late.returncode == 2, late
    assert f"run {run_id} is done: it cannot be aborted" in late.stderr
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert (detail["run"]["status"], detail["run"]["message"]) == ("done", "")
    assert "abort" not in events(runbook_cli, run_id)
    assert lines(isolated / "log.txt") == ["a", "b"]


def test_an_approval_held_while_the_run_is_aborted_is_not_recorded(shared_state,
                                                                   write_runbook,
                                                                   runbook_cli, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    held = Held(tmp_path / "hold", "approve", run_id, "--step", "ok", "--by", "alice")

    assert runbook_cli("abort", run_id, "--by", "erin").code == 0
    late = held.release()

    assert late.returncode == 2, late
    assert f"run {run_id} is aborted: nothing to approve" in late.stderr
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert detail["run"]["status"] == "aborted"
    assert detail["approvals"] == []
    journal = runbook_cli("audit", "verify", "--full")
    assert journal.code == 0


def test_an_approval_held_while_nothing_happens_is_recorded(shared_state, write_runbook,
                                                            runbook_cli, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    held = Held(tmp_path / "hold", "approve", run_id, "--step", "ok", "--by", "alice")

    done = held.release()

    assert done.returncode == 0, done
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert [a["by"] for a in detail["approvals"]] == ["alice"]
