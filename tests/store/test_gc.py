"""``runbook gc``: the artifacts folders of runs that ended long ago go, the journal and the
run records stay, and a gc stopped at any moment leaves each folder whole or gone."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine import api
from engine.store import home, open_store
from engine.system.pause import PAUSE_WHILE_COLLECTING
from tests.conftest import REPO, runbook_process
from tests.fakes import FakeClock
from tests.helpers import book
from tests.store.test_store import BACKENDS, store_location

WRITE = str(REPO / "tests" / "playbooks" / "write.yml")
APPROVAL = "  - id: ok\n    approval: {prompt: go}\n"


def ansible_step(step_id: str, dest: str = "") -> str:
    """A playbook step that writes a file: its run keeps ansible-runner's artifacts."""
    dest = dest or str(Path.cwd() / f"{step_id}.txt")
    return (f"  - id: {step_id}\n    ansible:\n      playbook: {WRITE}\n"
            f"      extravars: {{dest: {dest}, content: hi}}\n")


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path, monkeypatch) -> str:
    where = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", where)
    return where


def run(runbook_cli, path: Path, code: int) -> str:
    result = runbook_cli("run", str(path))
    assert result.code == code, (result.out, result.err)
    return result.out.split()[1]


def files_of(run_id: str) -> list[str]:
    folder = home() / "runs" / run_id
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def removals(run_id: str) -> list[dict[str, object]]:
    with open_store(readonly=True) as store:
        return [j.data for j in store.journal(run_id) if j.kind == "artifacts-removed"]


def test_gc_removes_the_folders_of_runs_ended_before_the_limit_and_nothing_else(
        location, write_runbook, runbook_cli, isolated):
    done = run(runbook_cli, write_runbook(book(ansible_step("w")), "done"), 0)
    fail = ansible_step("w", dest="/nonexistent-folder/out.txt")
    failed = run(runbook_cli, write_runbook(book(fail), "failed"), 1)
    waiting = run(runbook_cli, write_runbook(book(ansible_step("w"), APPROVAL), "waiting"), 3)
    assert all(files_of(r) for r in (done, failed, waiting))
    before = runbook_cli("audit", "export", "--run", done).out
    ended = datetime.now(UTC)

    # Not yet 90 days after the end: nothing goes.
    soon = api.gc(older_than="90d", clock=FakeClock(ended + timedelta(days=89)))
    assert soon.collected.removed == () and files_of(done)

    later = FakeClock(ended + timedelta(days=91))
    listed = api.gc(older_than="90d", dry_run=True, clock=later)
    assert [r.run_id for r in listed.collected.removed] == [done] and files_of(done)
    assert removals(done) == []  # a dry run records nothing

    result = api.gc(older_than="90d", clock=later)
    assert [r.run_id for r in result.collected.removed] == [done]
    assert result.collected.kept_open == 2
    assert not (home() / "runs" / done).exists()
    assert files_of(failed) and files_of(waiting)  # they may still be resumed
    recorded = removals(done)
    assert len(recorded) == 1 and recorded[0]["folder"] == f"runs/{done}"
    assert recorded[0]["files"] == result.collected.removed[0].files > 0

    # The run and its journal are all still there.
    status = runbook_cli("status", done, "--output", "json").json()
    assert isinstance(status, dict) and status["run"]["status"] == "done"
    assert [e["kind"] for e in status["events"]] == ["artifacts-removed"]
    after = runbook_cli("audit", "export", "--run", done)
    assert after.code == 0 and "artifacts-removed" in after.out
    assert "| `w` | ok | 1 |" in before and "| `w` | ok | 1 |" in after.out
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0, verified.out
    assert runbook_cli("resume", failed).code == 1  # its folder is there to run into again

    again = api.gc(older_than="90d", clock=later)
    assert again.collected.removed == () and len(removals(done)) == 1


@pytest.mark.parametrize("given", ["90", "ninety days", "-1d", "1y", "90 d", ""])
def test_a_bad_duration_is_refused_and_changes_nothing(given, tmp_path, monkeypatch,
                                                       write_runbook, runbook_cli):
    monkeypatch.setenv("RUNBOOK_STATE", str(tmp_path / "state.db"))
    done = run(runbook_cli, write_runbook(book(ansible_step("w"))), 0)
    journal = runbook_cli("audit", "verify", "--full").out
    result = runbook_cli("gc", f"--older-than={given}")
    assert result.code == 2
    assert f"--older-than: {given!r} is not a duration" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert files_of(done) and runbook_cli("audit", "verify", "--full").out == journal


INVENTORY = """\
apiVersion: runbook/v1
kind: Inventory
metadata: {name: inv}
retention: {artifacts: RETAIN}
"""


def test_the_inventory_retention_applies_without_the_flag(tmp_path, monkeypatch, isolated,
                                                          write_runbook, runbook_cli):
    monkeypatch.setenv("RUNBOOK_STATE", str(tmp_path / "state.db"))
    done = run(runbook_cli, write_runbook(book(ansible_step("w"))), 0)
    inventory = isolated / "inv.yaml"
    inventory.write_text(INVENTORY.replace("RETAIN", "2w"))
    kept = runbook_cli("gc", "--inventory", str(inventory))
    assert kept.code == 0 and "removed 0 run folders" in kept.out
    assert "(retention.artifacts of inventory inv 2w)" in kept.out
    ended = datetime.now(UTC)
    result = api.gc(inventory=str(inventory), clock=FakeClock(ended + timedelta(days=15)))
    assert [r.run_id for r in result.collected.removed] == [done]
    assert removals(done)[0]["reason"] == ("ended more than 2w ago "
                                           "(retention.artifacts of inventory inv)")

    inventory.write_text(INVENTORY.replace("RETAIN", "3 months"))
    refused = runbook_cli("gc", "--inventory", str(inventory))
    assert refused.code == 2 and f"{inventory}:4" in refused.err and "retention" in refused.err
    missing = runbook_cli("gc")
    assert missing.code == 2 and "needs --older-than DURATION" in missing.err


def paused_gc(fifo: Path) -> subprocess.Popen[str]:
    os.mkfifo(fifo)
    return runbook_process("gc", "--older-than", "0d", env={PAUSE_WHILE_COLLECTING: str(fifo)})


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_gc_stopped_midway_leaves_each_folder_whole_or_gone(
        stop, tmp_path, monkeypatch, isolated, write_runbook, runbook_cli):
    monkeypatch.setenv("RUNBOOK_STATE", str(tmp_path / "state.db"))
    path = write_runbook(book(ansible_step("w")))
    runs = sorted(run(runbook_cli, path, 0) for _ in range(2))  # the order gc takes them
    whole = {r: files_of(r) for r in runs}
    fifo = isolated / "pause"
    proc = paused_gc(fifo)
    # Opening the FIFO's writing end returns once gc has opened it: it has renamed the first
    # run's folder aside, journaled it, deleted one of its files, and waits.
    with open(fifo, "w"):
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 130), err
    left = {r: files_of(r) for r in runs}
    assert left[runs[0]] == [] and left[runs[1]] == whole[runs[1]]
    aside = list((home() / "runs" / ".removing").rglob(runs[0]))
    assert len(aside) == 1  # half deleted, out of the run's place
    for run_id in runs:
        assert runbook_cli("status", run_id).code == 0
        assert runbook_cli("audit", "export", "--run", run_id).code == 0

    again = runbook_cli("gc", "--older-than", "0d")
    assert again.code == 0, again.err
    assert f"removed runs/{runs[0]} (left half removed by a gc that was stopped)" in again.out
    assert f"removed runs/{runs[1]}: " in again.out
    assert list((home() / "runs").iterdir()) == [home() / "runs" / ".removing"]
    assert list((home() / "runs" / ".removing").iterdir()) == []
    assert [len(removals(r)) for r in runs] == [1, 1]  # each removal recorded once
    assert runbook_cli("audit", "verify", "--full").code == 0
