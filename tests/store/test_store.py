"""The state store contract, run against every backend."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import (
    ApprovalAlreadyUsed,
    ApprovalRecord,
    EventRecord,
    LockRecord,
    PlanRecord,
    RunRecord,
    StateStore,
    StepRecord,
    open_store,
)
from engine.store.owner import this_process
from engine.system.identity import origin

BACKENDS = ["sqlite", "postgres"]


def store_location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / "state.db")
    from urllib.parse import quote

    db = request.getfixturevalue("database")
    return (f"postgresql://{db['user']}:{quote(db['password'], safe='')}@{db['host']}:"
            f"{db['port']}/{db['name']}")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_location(request.param, request, tmp_path)


@pytest.fixture
def store(location: str) -> Iterator[StateStore]:
    with open_store(location) as s:
        yield s


def a_run(run_id: str = "r1", started: str = "2026-01-01T00:00:00.000+00:00") -> RunRecord:
    return RunRecord(id=run_id, runbook="book", path="/x/book.yaml", runbook_sha="a" * 64,
                     inventory=None, inventory_sha="b" * 64, params={"tag": "v1"}, user="ann",
                     started_at=started, plan_hash="c" * 64)


def test_run_round_trip_and_status(store):
    store.create_run(a_run())
    assert store.get_run("r1") == a_run()
    store.set_run_status("r1", "failed", ended_at="2026-01-01T00:01:00.000+00:00", message="x")
    got = store.get_run("r1")
    assert (got.status, got.ended_at, got.message) == ("failed",
                                                       "2026-01-01T00:01:00.000+00:00", "x")
    assert store.get_run("nope") is None


@pytest.mark.parametrize("final", ["aborted", "done"])
def test_an_aborted_or_done_run_keeps_its_status(store, final):
    store.create_run(a_run())
    assert store.set_run_status("r1", final, ended_at="t1", message="by erin", at="t1")
    journal = len(store.journal())
    for later in ("failed", "interrupted", "running", "waiting", "done", "aborted"):
        assert not store.set_run_status("r1", later, ended_at="t2", message="late", at="t2")
    got = store.get_run("r1")
    assert (got.status, got.ended_at, got.message) == (final, "t1", "by erin")
    assert len(store.journal()) == journal  # nothing recorded of the refused writes


def test_runs_listed_newest_first(store):
    for i in range(3):
        store.create_run(a_run(f"r{i}", f"2026-01-0{i + 1}T00:00:00.000+00:00"))
    assert [r.id for r in store.list_runs()] == ["r2", "r1", "r0"]
    assert [r.id for r in store.list_runs(limit=1)] == ["r2"]


def test_step_records_upsert_in_order(store):
    store.create_run(a_run())
    store.save_step(StepRecord("r1", "b", "running", 1, "t0", "fp-b"))
    store.save_step(StepRecord("r1", "a", "running", 1, "t1", "fp-a"))
    store.save_step(StepRecord("r1", "b", "ok", 1, "t0", "fp-b", ended_at="t2",
                               result={"rc": 0, "lines": ["x"]}))
    steps = store.steps("r1")
    assert list(steps) == ["b", "a"]
    assert steps["b"].status == "ok" and steps["b"].result == {"rc": 0, "lines": ["x"]}
    assert steps["b"].schema_version == 1


def test_approvals_and_events(store):
    store.create_run(a_run())
    store.add_approval(ApprovalRecord("r1", "gate", "bob", "t1", "CHG-1"))
    store.add_approval(ApprovalRecord("r1", "gate", "bob", "t3", "again"))  # replaces
    store.add_event(EventRecord("r1", "t2", "force-resume", {"by": "ann"}))
    assert store.approvals("r1") == [ApprovalRecord("r1", "gate", "bob", "t3", "again")]
    # The journal adds who made the record on this machine beside the name claimed.
    assert store.events("r1") == [EventRecord("r1", "t2", "force-resume",
                                              {"by": "ann", **origin()})]


def test_plans_and_their_approvals(store):
    plan = PlanRecord(hash="ab" * 32, runbook="promote", runbook_sha="s", inventory_sha="i",
                      params={"to": "live"}, created_at="t0", created_by="ann")
    store.save_plan(plan)
    store.save_plan(plan)  # the same plan twice is one plan
    assert store.find_plan("abab") == [plan]
    assert store.find_plan("ff") == []
    given = ApprovalRecord(run_id="", step_id="", by="bob", at="t1", item="cab",
                           ticket="CHG-9", plan_hash=plan.hash)
    store.add_approval(given)
    assert store.plan_approvals("promote") == [(given, plan)]
    assert store.plan_approvals("rollback") == []


def test_a_plan_keeps_what_it_bound(store):
    plan = PlanRecord(hash="cd" * 32, runbook="promote", runbook_sha="s", inventory_sha="i",
                      params={"to": "live"}, created_at="t0", created_by="ann",
                      bound={"source_digest": "sha256:1"})
    store.save_plan(plan)
    assert store.find_plan("cdcd") == [plan]


def test_a_plan_approval_is_used_by_one_run_in_the_transaction_of_its_gate(store):
    for run_id in ("r1", "r2"):
        store.create_run(a_run(run_id))
    use = {"plan_hash": "ab" * 32, "gate": "cab", "by": "bob"}
    gate = StepRecord("r1", "checklist", "ok", 1, "t1", "fp", ended_at="t2")
    store.save_step(gate, uses=[use])
    store.save_step(gate, uses=[use])  # the same run again (a resumed checkpoint): no conflict
    assert store.plan_approval_uses("ab" * 32) == {("cab", "bob"): "r1"}
    other = StepRecord("r2", "checklist", "ok", 1, "t3", "fp", ended_at="t4")
    with pytest.raises(ApprovalAlreadyUsed, match="already used by run r1"):
        store.save_step(other, uses=[use])
    assert store.steps("r2") == {}  # the gate's checkpoint was not written either
    used = [j for j in store.journal() if j.kind == "plan-approval-used"]
    assert [(j.run_id, j.data["by"]) for j in used] == [("r1", "bob")]


def test_a_lock_is_held_by_one_run_at_a_time(store):
    store.create_run(a_run("r1"))
    assert store.acquire_lock(LockRecord("live", "r1", "ann", "t1")) is None
    assert store.acquire_lock(LockRecord("live", "r1", "ann", "t1")) is None  # re-entrant
    holder = store.acquire_lock(LockRecord("live", "r2", "bob", "t2"))
    assert holder == LockRecord("live", "r1", "ann", "t1")
    assert store.acquire_lock(LockRecord("qa", "r2", "bob", "t2")) is None
    assert store.locks() == [LockRecord("live", "r1", "ann", "t1"),
                             LockRecord("qa", "r2", "bob", "t2")]
    assert store.release_lock("live", run_id="r2") is False  # not r2's lock
    assert store.release_lock("live", run_id="r1", at="t3") is True
    assert store.acquire_lock(LockRecord("live", "r2", "bob", "t4")) is None


def test_create_run_takes_the_lock_or_records_nothing(store):
    first = RunRecord(**{**a_run("r1").__dict__, "lock_env": "staging"})
    second = RunRecord(**{**a_run("r2").__dict__, "lock_env": "staging"})
    assert store.create_run(first) is None
    assert store.create_run(second) == LockRecord("staging", "r1", "ann", first.started_at)
    assert store.get_run("r2") is None


def test_the_journal_chains_every_record(store):
    store.create_run(a_run())
    store.save_step(StepRecord("r1", "a", "running", 1, "t0", "fp"))  # not journaled
    store.save_step(StepRecord("r1", "a", "ok", 1, "t0", "fp", ended_at="t1"))
    store.add_approval(ApprovalRecord("r1", "gate", "bob", "t2"))
    records = store.journal()
    assert [r.kind for r in records] == ["run-start", "step", "approval"]
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert [r.kind for r in store.journal("r1")] == ["run-start", "step", "approval"]


def test_claim_is_exclusive_while_the_holder_lives(store):
    store.create_run(a_run())
    me = this_process()
    assert store.claim_run("r1", me) is None
    assert store.claim_run("r1", me) is None  # re-entrant for the same owner
    other = f"{me.rsplit(':', 1)[0]}:1"  # pid 1 lives
    assert store.claim_run("r1", other) == me
    store.release_run("r1", me)
    assert store.claim_run("r1", other) is None


def test_claim_held_by_a_dead_process_is_taken_over(store):
    store.create_run(a_run())
    dead = f"{this_process().rsplit(':', 1)[0]}:999999999"
    assert store.claim_run("r1", dead) is None
    assert store.claim_run("r1", this_process()) is None


def test_a_new_run_is_held_by_the_process_that_records_it(store):
    me = this_process()
    store.create_run(a_run(), owner=me)
    other = f"{me.rsplit(':', 1)[0]}:1"  # pid 1 lives
    assert store.claim_run("r1", other) == me


class Refused(Exception):
    pass


def test_everything_done_in_a_locked_run_is_undone_together(store):
    store.create_run(a_run())
    journal = len(store.journal())
    with pytest.raises(Refused), store.locked_run("r1") as run:
        assert run is not None and run.status == "running"
        store.set_run_status("r1", "aborted", ended_at="t1", message="x", at="t1")
        store.add_event(EventRecord("r1", "t1", "abort", {"by": "erin"}))
        assert store.claim_run("r1", this_process()) is None
        raise Refused
    assert store.get_run("r1") == a_run()
    assert len(store.journal()) == journal
    other = f"{this_process().rsplit(':', 1)[0]}:1"
    assert store.claim_run("r1", other) is None  # the claim was undone too
    with store.locked_run("nope") as missing:
        assert missing is None


def test_a_locked_run_commits_when_its_body_ends(store):
    store.create_run(a_run())
    with store.locked_run("r1"):
        store.set_run_status("r1", "failed", ended_at="t1", message="x", at="t1")
    assert store.get_run("r1").status == "failed"


def test_postgres_a_run_locked_elsewhere_is_read_once_that_transaction_ends(request,
                                                                           tmp_path):
    location = store_location("postgres", request, tmp_path)
    first, second = open_store(location), open_store(location)
    seen: list[str] = []

    def read_locked() -> None:
        with second.locked_run("r1") as run:
            assert run is not None
            seen.append(run.status)

    try:
        first.create_run(a_run())
        with first.locked_run("r1"):
            first.set_run_status("r1", "done", ended_at="t1", at="t1")
            reader = threading.Thread(target=read_locked)
            reader.start()
            wait_for_a_lock_wait(location)
        reader.join(timeout=30)
        assert seen == ["done"]  # not the "running" it would have read without waiting
    finally:
        first.close()
        second.close()


def wait_for_a_lock_wait(location: str) -> None:
    """Until a session of this database waits for a row lock."""
    import psycopg

    deadline = time.monotonic() + 30
    with psycopg.connect(location, autocommit=True) as conn:
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND wait_event_type = 'Lock'"
                               ).fetchone()[0]:
            assert time.monotonic() < deadline, "nobody waited for the run's row"
            time.sleep(0.02)


def test_sqlite_file_is_created_with_its_folder(tmp_path):
    location = tmp_path / "deep" / "er" / "state.db"
    open_store(str(location)).close()
    with sqlite3.connect(location) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "steps", "approvals", "plans", "locks", "history", "journal"} <= tables


def test_an_unreachable_postgres_is_a_clear_error():
    from engine.errors import RunbookError

    with pytest.raises(RunbookError, match="cannot reach the PostgreSQL state store"):
        open_store("postgresql://nobody:x@127.0.0.1:1/none")


def test_history_is_recorded_once_per_run_kind_and_env(store):
    from engine.store import HistoryRecord

    rec = HistoryRecord(at="t1", run_id="r1", user="ann", kind="promotion", env="qa",
                        data={"digest": "sha256:x"})
    store.add_history(rec)
    store.add_history(rec)  # a re-run after a crash
    store.add_history(HistoryRecord(at="t2", run_id="r2", user="bob", kind="promotion",
                                    env="live", data={}))
    assert [h.run_id for h in store.history()] == ["r2", "r1"]
    assert store.history(env="qa") == [rec]
    assert store.history(kind="rollback") == []


def test_every_journal_record_has_a_time(store):
    store.create_run(a_run())
    store.set_run_status("r1", "waiting", message="waiting for approval", at="t5")
    assert store.journal()[-1].kind == "run-status" and store.journal()[-1].at == "t5"
