"""A store that stays fast as it grows: the journal is verified as it is read (constant
memory, both backends), and one run's status and change record are read through indexes."""

from __future__ import annotations

import sqlite3
import tracemalloc

import pytest

from engine import api
from engine.store import RunRecord, StateStore, StepRecord, open_store
from engine.trust.audit import check
from tests.helpers import append_step, book
from tests.store.test_store import BACKENDS, store_location

APPROVAL = "  - id: ok\n    approval: {prompt: go}\n"


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path, monkeypatch) -> str:
    where = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", where)
    return where


def many_runs(store: StateStore, runs: int, steps: int = 8) -> int:
    """Record ``runs`` ended runs straight through the store, a hundred per transaction; the
    number of journal records they make."""
    for first in range(0, runs, 100):
        with store.locked_run(""):  # one transaction: the writes inside are part of it
            for n in range(first, min(first + 100, runs)):
                run_id = f"r{n:06d}"
                at = f"2026-01-01T00:00:{n % 60:02d}.000+00:00"
                store.create_run(RunRecord(
                    id=run_id, runbook="book", path="/x/book.yaml", runbook_sha="a" * 64,
                    inventory=None, inventory_sha="b" * 64, params={"n": n}, user="ann",
                    started_at=at, plan_hash="c" * 64))
                for s in range(steps):
                    store.save_step(StepRecord(run_id, f"s{s}", "ok", 1, at, "f" * 64,
                                               ended_at=at, result={"n": s}))
                store.set_run_status(run_id, "done", ended_at=at, at=at)
    return runs * (steps + 2)


def test_the_journal_is_read_in_batches_in_order(location):
    with open_store(location) as store:
        count = many_runs(store, 30)
        whole = store.journal()
        assert len(whole) == count
        assert list(store.scan_journal(batch=7)) == whole


def test_verifying_holds_one_batch_not_the_journal(location):
    with open_store(location) as store:
        count = many_runs(store, 1000)
    with open_store(location, readonly=True) as store:
        tracemalloc.start()
        verdict = check(store.scan_journal(batch=250))
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        listed = check(store.journal())
        _, whole = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert verdict.intact and verdict.records == listed.records == count
    assert verdict.head == listed.head
    # The records of one batch and the chain's last hash, against all 10,000 records (forty
    # batches).
    assert streamed * 10 < whole, (streamed, whole)


def test_postgres_hands_the_journal_over_from_a_server_side_cursor(request, tmp_path):
    with open_store(store_location("postgres", request, tmp_path)) as store:
        many_runs(store, 3)
        scan = store.scan_journal(batch=2)
        next(scan)
        cursors = store._db.execute(  # type: ignore[attr-defined]
            "SELECT name FROM pg_cursors").fetchall()
        scan.close()
    assert cursors == [("runbook_scan",)]


def test_a_rewritten_journal_lists_the_first_problems_and_counts_the_rest(location,
                                                                          runbook_cli):
    with open_store(location) as store:
        count = many_runs(store, 20)
    edit = "UPDATE journal SET data = replace(data, '\"ok\"', '\"failed\"')"
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(edit)
    else:
        with sqlite3.connect(location) as conn:
            conn.execute(edit)
    edited = count - 2 * 20  # every step record
    result = runbook_cli("audit", "verify", "--full")
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) == 102 and lines[0].endswith("its content does not match its hash (edited)")
    assert lines[-2] == f"journal: and {edited - 100} more problems"
    assert lines[-1].startswith(f"journal damaged: {count} records, head ")
    shown = runbook_cli("audit", "verify", "--full", "--output", "json").json()
    assert isinstance(shown, dict)
    assert shown["problem_count"] == edited and len(shown["problems"]) == 100


OLD_FORM = ("SELECT seq, at, run_id, kind, data, prev_hash, hash FROM journal "
            "WHERE (CAST(? AS TEXT) IS NULL OR run_id = ?) ORDER BY seq")


def query_plans(db: sqlite3.Connection, queries: list[str]) -> dict[str, str]:
    """Each query's plan, as EXPLAIN QUERY PLAN details joined; literals the trace shows
    become parameters again."""
    plans = {}
    for query in queries:
        if not query.startswith("SELECT") or "sqlite_master" in query:
            continue
        rows = db.execute("EXPLAIN QUERY PLAN " + query).fetchall()
        plans[query] = " | ".join(str(row[-1]) for row in rows)
    return plans


def test_status_and_export_of_one_run_read_it_through_indexes(tmp_path, monkeypatch,
                                                              write_runbook, runbook_cli):
    location = str(tmp_path / "state.db")
    monkeypatch.setenv("RUNBOOK_STATE", location)
    with open_store(location) as store:
        many_runs(store, 50)
    path = write_runbook(book(APPROVAL, append_step("a")))
    run_id = runbook_cli("run", str(path)).out.split()[1]
    assert runbook_cli("approve", run_id, "--step", "ok", "--by", "alice").code == 0
    assert runbook_cli("resume", run_id).code == 0
    with open_store(location, readonly=True) as store:
        asked: list[str] = []
        db: sqlite3.Connection = store._db  # type: ignore[attr-defined]
        db.set_trace_callback(asked.append)
        shown = api.status(run_id=run_id)  # opens its own store: nothing traced
        detail = api.run_detail(store, store.get_run(run_id))  # what status and export read
        journal = store.journal(run_id)  # what export adds
        api.replan(store, detail.run)
        db.set_trace_callback(None)
        plans = query_plans(db, asked)
        old = query_plans(db, [OLD_FORM.replace("?", f"'{run_id}'")])
    assert not isinstance(shown, list) and shown.run.status == "done"
    assert {j.run_id for j in journal} == {run_id} and len(journal) == 8
    # Each table by its name or its index's (approvals is read as ``a``, by its key).
    assert all(any(table in plan for plan in plans.values())
               for table in ("journal", "steps", "approvals", "runs"))
    scans = {query: plan for query, plan in plans.items()
             if any(part.startswith("SCAN") for part in plan.split(" | "))}
    assert plans and not scans, scans
    # The form that used to serve both one run and all runs reads the whole table.
    assert next(iter(old.values())).startswith("SCAN journal")


def test_comparing_the_tables_holds_one_range_not_the_store(location):
    with open_store(location) as store:
        many_runs(store, 1000)  # 10,000 records, five ranges of runs
    with open_store(location, readonly=True) as store, store.snapshot():
        tracemalloc.start()
        problems = list(store.cross_check())
        _, ranged = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = len(store.journal())
        _, listed = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert problems == [] and whole == 10_000
    assert ranged * 3 < listed, (ranged, listed)
