"""The state store contract, run against every backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import ApprovalRecord, EventRecord, RunRecord, StateStore, StepRecord, open_store
from engine.store.owner import this_process

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    location = str(tmp_path / "state.db")
    s = open_store(location)
    yield s
    s.close()


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
    store.add_event(EventRecord("r1", "t2", "force-resume", {"by": "ann"}))
    assert store.approvals("r1") == [ApprovalRecord("r1", "gate", "bob", "t1", "CHG-1")]
    assert store.events("r1") == [EventRecord("r1", "t2", "force-resume", {"by": "ann"})]


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


def test_sqlite_file_is_created_with_its_folder(tmp_path):
    location = tmp_path / "deep" / "er" / "state.db"
    open_store(str(location)).close()
    with sqlite3.connect(location) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "steps", "approvals", "events"} <= tables


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
