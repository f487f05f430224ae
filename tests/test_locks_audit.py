"""Environment locks (SQLite and PostgreSQL) and the tamper-evident journal."""

from __future__ import annotations

import socket
import sqlite3

import psycopg
import pytest

from engine.system.identity import login_name
from tests.conftest import runbook_process
from tests.helpers import append_step, book
from tests.store.test_store import store_location

LOCKED = "metadata: {name: book, lock: \"{{ params.env }}\"}\n"


def locked_book(*steps: str) -> str:
    text = book(*steps, params="params:\n  env: {type: string, default: live}\n")
    return text.replace("metadata: {name: book}\n", LOCKED)


SLOW = "  - id: slow\n    command: {argv: [sleep, '1.5']}\n"


@pytest.fixture(params=["sqlite", "postgres"])
def shared_state(request, tmp_path, monkeypatch) -> str:
    location = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    return location


def test_two_runs_started_together_on_one_environment(shared_state, write_runbook):
    path = write_runbook(locked_book(append_step("a"), SLOW))
    procs = [runbook_process("run", str(path), env={"RUNBOOK_USER": who})
             for who in ("alice", "bob")]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 4], outs
    loser = next(out for p, out in zip(procs, outs, strict=True) if p.returncode == 4)
    assert "live is locked by run" in loser[1] and "started by" in loser[1]


def test_runs_on_different_environments_do_not_wait(shared_state, write_runbook):
    path = write_runbook(locked_book(SLOW))
    procs = [runbook_process("run", str(path), "--env", env) for env in ("qa", "uat1", "live")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]


def test_a_waiting_run_keeps_its_lock_until_it_ends(shared_state, write_runbook, runbook_cli):
    path = write_runbook(locked_book("  - id: ok\n    approval: {prompt: go}\n",
                                     append_step("a")))
    first = runbook_cli("run", str(path))
    assert first.code == 3
    run_id = first.out.split()[1]
    listed = runbook_cli("lock", "list", "--output", "json").json()
    assert [(lock["env"], lock["run_id"]) for lock in listed] == [("live", run_id)]
    second = runbook_cli("run", str(path))
    assert second.code == 4 and f"live is locked by run {run_id}" in second.err
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    assert runbook_cli("resume", run_id).code == 0
    assert runbook_cli("lock", "list", "--output", "json").json() == []


def test_aborting_or_releasing_frees_the_environment(shared_state, write_runbook, runbook_cli):
    path = write_runbook(locked_book("  - id: ok\n    approval: {prompt: go}\n"))
    run_id = runbook_cli("run", str(path)).out.split()[1]
    assert runbook_cli("abort", run_id).code == 0
    assert runbook_cli("lock", "list", "--output", "json").json() == []
    other = runbook_cli("run", str(path)).out.split()[1]
    assert runbook_cli("lock", "release", "--env", "live").code == 2  # needs a reason
    released = runbook_cli("lock", "release", "--env", "live", "--reason", "INC-9 stuck run",
                           "--by", "erin")
    assert released.code == 0
    events = runbook_cli("status", other, "--output", "json").json()["events"]
    assert events[-1]["kind"] == "lock-release"
    assert events[-1]["detail"] == {"env": "live", "by": "erin", "reason": "INC-9 stuck run",
                                    "os_user": login_name(), "host": socket.gethostname()}
    assert runbook_cli("lock", "release", "--env", "live", "--reason", "x").code == 2


def tamper(location: str, sql: str) -> None:
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(sql)
    else:
        with sqlite3.connect(location) as conn:
            conn.execute(sql)


def journal_of_a_run(write_runbook, runbook_cli) -> None:
    path = write_runbook(locked_book(append_step("a"), append_step("b"), append_step("c")))
    assert runbook_cli("run", str(path)).code == 0
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0 and "journal intact: 7 records" in verified.out


SWAP = """UPDATE journal SET at = x.at, run_id = x.run_id, kind = x.kind, data = x.data,
  prev_hash = x.prev_hash, hash = x.hash
FROM (SELECT 5 - seq AS target, at, run_id, kind, data, prev_hash, hash FROM journal
      WHERE seq IN (2, 3)) AS x WHERE journal.seq = x.target"""


@pytest.mark.parametrize(("change", "sql", "expected"), [
    ("edited", "UPDATE journal SET data = replace(data, '\"ok\"', '\"skipped\"') WHERE seq = 4",
     "record 4: its content does not match its hash (edited)"),
    ("deleted", "DELETE FROM journal WHERE seq = 3",
     "record 4: expected record 3 here (missing or moved)"),
    # A record follows the hash its row before holds: moved, it no longer matches its hash.
    ("reordered", SWAP, "record 2: its content does not match its hash"),
])
def test_audit_verify_finds_tampering(change, sql, expected, shared_state, write_runbook,
                                      runbook_cli):
    journal_of_a_run(write_runbook, runbook_cli)
    tamper(shared_state, sql)
    result = runbook_cli("audit", "verify", "--full")
    assert result.code == 1
    assert expected in result.out, result.out


def test_audit_export_is_a_change_record(shared_state, write_runbook, runbook_cli, isolated):
    path = write_runbook(locked_book("  - id: ok\n    approval: {prompt: go}\n",
                                     append_step("a")))
    run_id = runbook_cli("run", str(path)).out.split()[1]
    runbook_cli("approve", run_id, "--step", "ok", "--by", "alice", "--ticket", "CHG-123",
                "--note", "reviewed")
    runbook_cli("resume", run_id)
    out = isolated / "change.md"
    assert runbook_cli("audit", "export", "--run", run_id, "--file", str(out)).code == 0
    text = out.read_text()
    assert text.startswith(f"# Change record: run `{run_id}`")
    row = next(line for line in text.splitlines() if line.startswith("| step `ok` |"))
    assert "| alice |" in row and "| CHG-123 |" in row and row.endswith("| reviewed |")
    assert "## Plan" in text and "[approval] ok" in text
    assert "| `a` | ok | 1 |" in text
    assert "run-start" in text and "approval" in text and "unlock" in text
