"""The journal is the truth: ``audit verify`` compares the tables with it, gates count only
approvals it records, and an emptied or cut journal is not reported intact (SQLite and
PostgreSQL, with real ``runbook`` commands and the stores written to behind their back)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import append_step
from tests.store.test_store import store_location
from tests.test_locks_audit import locked_book, tamper


@pytest.fixture(params=["sqlite", "postgres"])
def state_at(request, tmp_path, monkeypatch) -> str:
    """The store every command of the test uses, on each backend."""
    location = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    return location

APPROVAL = "  - id: ok\n    approval: {prompt: go}\n"
CHECKLIST = "  - id: ok\n    approval: {prompt: go, items: [load-testing]}\n"


def waiting_run(write_runbook, runbook_cli, step: str = APPROVAL) -> str:
    path = write_runbook(locked_book(step, append_step("a")))
    started = runbook_cli("run", str(path))
    assert started.code == 3, started
    run_id = started.out.split()[1]
    assert runbook_cli("audit", "verify", "--full").code == 0
    return run_id


def done_run(write_runbook, runbook_cli) -> str:
    run_id = waiting_run(write_runbook, runbook_cli)
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    assert runbook_cli("resume", run_id).code == 0
    return run_id


def test_verify_reports_the_record_count_and_the_whole_head_hash(state_at, write_runbook,
                                                                  runbook_cli):
    done_run(write_runbook, runbook_cli)
    text = runbook_cli("audit", "verify", "--full")
    shown = runbook_cli("audit", "verify", "--full", "--output", "json").json()
    assert text.code == 0 and shown["intact"]
    assert len(shown["head"]) == 64
    assert text.out == f"journal intact: {shown['records']} records, head {shown['head']}\n"


@pytest.mark.parametrize("step", [APPROVAL, CHECKLIST], ids=["approval", "checklist-item"])
def test_an_approval_row_without_its_journal_record_is_not_counted(step, state_at,
                                                                   write_runbook, runbook_cli):
    run_id = waiting_run(write_runbook, runbook_cli, step)
    item = "load-testing" if step == CHECKLIST else ""
    tamper(state_at, "INSERT INTO approvals (run_id, plan_hash, step_id, item, by_name, "
           f"at, note, ticket) VALUES ('{run_id}', '', 'ok', '{item}', 'alice', "
           "'2099-01-01T00:00:00.000+00:00', '', '')")
    resumed = runbook_cli("resume", run_id)
    assert resumed.code == 3, resumed
    assert "alice's approval is not counted: the audit journal has no record of it" \
        in resumed.out
    assert runbook_cli("status", run_id, "--output", "json").json()["run"]["status"] == "waiting"
    # Shown where people read the approvals, as not counted.
    shown = runbook_cli("status", run_id)
    assert "alice" in shown.out and "not counted: the audit journal has no record of it" \
        in shown.out, shown.out
    assert [a["recorded"] for a in runbook_cli("status", run_id, "--output", "json")
            .json()["approvals"]] == [False]
    record = runbook_cli("audit", "export", "--run", run_id)
    assert "not counted: no journal record" in record.out
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1
    assert (f"journal: approvals: run {run_id}, step ok{', item ' + item if item else ''}, "
            "by alice: no journal record (added to the table alone; gates do not count it)"
            in verified.out), verified.out
    # An approval given as the engine gives it counts.
    assert runbook_cli("approve", run_id, "--step", "ok", *(["--item", item] if item else []),
                       "--by", "bob").code == 0
    assert runbook_cli("resume", run_id).code == 0


@pytest.mark.parametrize(("sql", "says"), [
    ("UPDATE runs SET status = 'done'", "runs: run RUN: status is 'done', the journal says "
     "'waiting'"),
    ("UPDATE steps SET status = 'ok' WHERE step_id = 'ok'",
     "steps: run RUN, step ok: status is 'ok', the journal says 'waiting'"),
    ("UPDATE steps SET result = '{\"forged\":true}' WHERE step_id = 'ok'",
     "steps: run RUN, step ok: its attempts, fingerprint, error or result is not what the "
     "journal records"),
    ("DELETE FROM locks", "locks: live: the journal has it held by run RUN; in the table no "
     "run holds it"),
    ("UPDATE locks SET run_user = 'mallory'", "locks: live: held by run RUN for mallory"),
    ("INSERT INTO locks (env, run_id, run_user, since) VALUES ('qa', 'RUN', 'x', 'y')",
     "locks: qa: held by run RUN in the table; the journal has no lock of it"),
    ("INSERT INTO history (at, run_id, run_user, kind, env, data) VALUES ('t', 'RUN', 'x', "
     "'promotion', 'live', '{}')", "history: run RUN, promotion of live: no journal record"),
    ("INSERT INTO runs (id, runbook, path, runbook_sha, inventory_sha, params, run_user, "
     "started_at, plan_hash, status, schema_version) VALUES ('forged', 'b', 'p', 's', 's', "
     "'{}', 'x', 't', 'h', 'done', 1)", "runs: run forged: no run-start record in the journal"),
], ids=["status", "step", "step-result", "lock-deleted", "lock-holder", "lock-added",
        "history", "run"])
def test_a_row_changed_behind_the_journal_is_reported(sql, says, state_at, write_runbook,
                                                      runbook_cli):
    run_id = waiting_run(write_runbook, runbook_cli)
    tamper(state_at, sql.replace("RUN", run_id))
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1
    assert f"journal: {says.replace('RUN', run_id)}" in verified.out, verified.out
    assert verified.out.splitlines()[-1].startswith("journal damaged: ")


def test_an_edited_approval_ticket_is_reported(state_at, write_runbook, runbook_cli):
    run_id = waiting_run(write_runbook, runbook_cli)
    runbook_cli("approve", run_id, "--step", "ok", "--by", "alice", "--ticket", "CHG-1")
    tamper(state_at, "UPDATE approvals SET ticket = 'CHG-2'")
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1
    assert (f"journal: approvals: run {run_id}, step ok, by alice: ticket is 'CHG-2', the "
            "journal says 'CHG-1'") in verified.out


def head_file(runbook_cli, where: Path) -> Path:
    printed = runbook_cli("audit", "verify", "--full", "--print-head")
    assert printed.code == 0, printed
    where.write_text(printed.out)
    return where


@pytest.mark.parametrize("cut", [1, 10, "all"])
def test_records_cut_off_the_end_are_found_given_the_head(cut, state_at, write_runbook,
                                                          runbook_cli, tmp_path):
    for _ in range(2):
        done_run(write_runbook, runbook_cli)
    head = head_file(runbook_cli, tmp_path / "head.txt")
    records = runbook_cli("audit", "verify", "--full", "--output", "json").json()["records"]
    assert records > 10
    keep = 0 if cut == "all" else records - int(cut)
    tamper(state_at, f"DELETE FROM journal WHERE seq > {keep}")
    anchored = runbook_cli("audit", "verify", "--full", "--head", str(head))
    assert anchored.code == 1
    assert (f"journal: record {records} (the anchored head) is not in the journal, which "
            f"ends at record {keep}: records were removed from its end (truncated)"
            in anchored.out), anchored.out
    expected = runbook_cli("audit", "verify", "--full", "--expect-records", str(records))
    assert expected.code == 1
    assert f"the journal ends at record {keep}; {records} were expected" in expected.out
    if cut == "all":  # runs exist: an empty journal is not an intact one, head or not
        alone = runbook_cli("audit", "verify", "--full")
        assert alone.code == 1
        assert ("journal: it has no records, but the runs table has 2 runs (the journal was "
                "emptied)") in alone.out


def test_a_head_for_a_journal_that_went_on_counts_the_records_after_it(
        state_at, write_runbook, runbook_cli, tmp_path):
    run_id = waiting_run(write_runbook, runbook_cli)
    head = head_file(runbook_cli, tmp_path / "head.txt")
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    verified = runbook_cli("audit", "verify", "--full", "--head", str(head))
    assert verified.code == 0, verified
    assert "(unsigned, " in verified.out and "1 records came after it" in verified.out


@pytest.mark.parametrize("how", ["emptied", "zeroed"])
def test_an_emptied_or_zeroed_state_file_is_damaged_not_intact(how, write_runbook,
                                                               runbook_cli):
    done_run(write_runbook, runbook_cli)
    state = Path(os.environ["RUNBOOK_HOME"]) / "state.db"
    size = state.stat().st_size
    for side in (Path(f"{state}-wal"), Path(f"{state}-shm")):
        side.unlink(missing_ok=True)
    state.write_bytes(b"" if how == "emptied" else bytes(size))
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1, verified
    says = ("has no journal table: an emptied or zeroed file" if how == "emptied"
            else "the state store is damaged (file is not a database)")
    assert says in verified.out, verified.out
    assert "intact" not in verified.out
