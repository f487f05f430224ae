"""The state store's queries behind ``runbook board``, on every backend: one query each for
the newest change of every environment, the newest run of every lock with every waiting run,
and the steps and approvals of several runs."""

from __future__ import annotations

from dataclasses import replace

from engine.store import ApprovalRecord, HistoryRecord, StepRecord
from tests.store.test_store import a_run, location, store  # noqa: F401  (fixtures)

KINDS = ("promotion", "hotfix", "rollback")


def test_last_changes_are_the_newest_of_the_kinds_per_environment(store):  # noqa: F811
    for at, run, kind, env in (("t1", "r1", "promotion", "a"), ("t2", "r2", "rollback", "a"),
                               ("t3", "r3", "db-rollback", "a"), ("t1", "r4", "hotfix", "b"),
                               ("t2", "r5", "db-restore", "c")):
        store.add_history(HistoryRecord(at, run, "ann", kind, env, {"image": f"i:{run}"}))
    last = store.last_changes(KINDS)
    assert {env: (h.run_id, h.kind, h.data) for env, h in last.items()} == {
        "a": ("r2", "rollback", {"image": "i:r2"}), "b": ("r4", "hotfix", {"image": "i:r4"})}


def test_board_runs_steps_and_approvals_of_several_runs(store):  # noqa: F811
    def run(run_id: str, started: str, env: str, status: str) -> None:
        store.create_run(replace(a_run(run_id, started), lock_env=env))
        store.set_run_status(run_id, status)
        if status != "waiting":
            store.release_lock(env, run_id=run_id)

    run("r0", "2026-01-01T00:00:00+00:00", "a", "waiting")
    store.release_lock("a", run_id="r0")  # released by hand: it still waits
    run("r1", "2026-01-02T00:00:00+00:00", "a", "done")
    run("r2", "2026-01-03T00:00:00+00:00", "a", "failed")
    run("r3", "2026-01-02T00:00:00+00:00", "b,c", "waiting")
    run("r4", "2026-01-01T00:00:00+00:00", "b,c", "done")
    assert sorted(r.id for r in store.board_runs()) == ["r0", "r2", "r3"]

    store.save_step(StepRecord("r0", "checklist", "waiting", 1, "t0", "fp",
                               result={"items": {"x": {"passed": False}}}))
    store.save_step(StepRecord("r3", "read", "ok", 1, "t0", "fp"))
    store.save_step(StepRecord("r3", "gate", "waiting", 1, "t1", "fp"))
    store.add_approval(ApprovalRecord("r3", "gate", "bob", "t2", item="", ticket="CHG-1"))
    steps = store.steps_of(["r0", "r3", "r1"])
    assert {run_id: list(s) for run_id, s in steps.items()} == {
        "r0": ["checklist"], "r3": ["read", "gate"], "r1": []}
    assert steps["r0"]["checklist"].result == {"items": {"x": {"passed": False}}}
    approvals = store.approvals_of(["r0", "r3"])
    assert approvals["r0"] == [] and [(a.by, a.ticket) for a in approvals["r3"]] == [
        ("bob", "CHG-1")]
    assert store.steps_of([]) == {} and store.approvals_of([]) == {}
