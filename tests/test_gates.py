"""Checklist gates: four-eyes, quorum, roles, plan-bound and expiring approvals, soak and
window checks with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from engine import api
from engine.api.approvals import approve
from engine.errors import InvalidInput
from tests.fakes import FakeClock
from tests.helpers import APPEND, lines

T0 = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)  # inside the live window below
INVENTORY = {
    "apiVersion": "runbook/v1", "kind": "Inventory", "metadata": {"name": "gated"},
    "people": {"alice": {"roles": ["cab"]}, "bob": {"roles": ["cab"]},
               "carol": {"roles": ["cab"]}, "dave": {"roles": ["qa"]},
               "tester": {"roles": ["cab"]}},
    "approvals": {"expiry_hours": 24},
    "maintenance_windows": {"live": [
        {"start": "2026-01-02T10:00:00Z", "end": "2026-01-02T14:00:00Z", "ticket": "CHG-7"}]},
    "environments": {
        "staging": {"stage": 4, "namespace": "s", "deployment": "d", "container": "c",
                    "overlay": "o"},
        "live": {"stage": 5, "namespace": "l", "deployment": "d", "container": "c",
                 "overlay": "o", "required_gates": ["cab"]}},
    "checklists": {"go-live": [
        {"id": "cab", "text": "CAB approval", "approval": {"gate": "cab", "role": "cab",
                                                            "quorum": 2}},
        {"id": "soak", "text": "Staging verified 24 h", "check": {"soak": {"env": "staging",
                                                                          "hours": 24}}},
        {"id": "window", "text": "Maintenance window", "check": {"window": {"env": "live"}}},
        {"id": "smoke", "text": "Smoke tests passed"}]}}


def book(inventory: Path, *, gated: bool = True, items: str = "go-live") -> str:
    return f"""\
apiVersion: runbook/v1
kind: Runbook
metadata:
  name: golive
  inventory: {inventory}
  lock: "{{{{ params.env }}}}"
  gated: {str(gated).lower()}
params:
  env: {{type: string, default: live}}
  tag: {{type: string, required: true}}
steps:
  - id: checklist
    approval: {{prompt: "go live", items: "{{{{ inventory.checklists['{items}'] }}}}"}}
  - id: deploy
    command: {{argv: [python3, -c, "{APPEND}", log.txt, "deployed {{{{ params.tag }}}}"]}}
  - id: record
    record:
      kind: promotion
      env: "{{{{ params.env }}}}"
      data: {{image: "app:{{{{ params.tag }}}}"}}
"""


@pytest.fixture
def setup(isolated: Path):
    inventory = isolated / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    golive = isolated / "golive.yaml"
    golive.write_text(book(inventory))
    to_staging = isolated / "staging.yaml"
    to_staging.write_text(book(inventory, gated=False).replace("name: golive\n", "name: stage\n")
                          .replace("  - id: checklist\n    approval: {prompt: \"go live\", "
                                   "items: \"{{ inventory.checklists['go-live'] }}\"}\n", ""))
    return {"golive": str(golive), "staging": str(to_staging), "inventory": inventory}


def soaked(setup, clock: FakeClock, hours: float = 25) -> None:
    """Staging got its release ``hours`` before the clock's current time."""
    at = FakeClock(clock.now() - timedelta(hours=hours))
    done = api.run(runbook=setup["staging"], params={"env": "staging", "tag": "v1"}, clock=at)
    assert done.status == "done", done.message


def start(setup, clock, tag="v1"):
    result = api.run(runbook=setup["golive"], params={"tag": tag}, clock=clock)
    return result


def gate_detail(result) -> str:
    step = next(s for s in result.steps if s.step_id == "checklist")
    return step.result["items"]["cab"]["detail"] if step.result else step.message


def test_everything_satisfied_goes_live(setup, isolated):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    first = start(setup, clock)
    assert first.status == "waiting"
    for person in ("alice", "bob"):
        approve(by=person, run_id=first.run_id, gate="cab", ticket="CHG-7", clock=clock)
    approve(by="carol", run_id=first.run_id, step="checklist", items=["smoke"], clock=clock)
    done = api.resume(run_id=first.run_id, clock=clock)
    assert done.status == "done", done.message
    assert lines(isolated / "log.txt")[-1] == "deployed v1"
    items = done.steps[0].result["items"]
    assert items["cab"]["passed"] and {a["by"] for a in items["cab"]["approvals"]} == \
        {"alice", "bob"}
    assert items["soak"]["passed"] and items["soak"]["hours"] == 25.0
    assert items["window"]["passed"] and "CHG-7" in items["window"]["detail"]
    assert items["smoke"]["by"] == "carol"


def test_the_starter_unknown_people_and_wrong_roles_cannot_approve(setup):
    clock = FakeClock(T0 + timedelta(days=1))
    run_id = start(setup, clock).run_id
    with pytest.raises(InvalidInput, match=r"tester started run .* cannot approve"):
        approve(by="tester", run_id=run_id, gate="cab", clock=clock)
    with pytest.raises(InvalidInput, match="mallory is not among the inventory's people"):
        approve(by="mallory", run_id=run_id, gate="cab", clock=clock)
    with pytest.raises(InvalidInput, match="dave does not have the cab role"):
        approve(by="dave", run_id=run_id, gate="cab", clock=clock)
    with pytest.raises(InvalidInput, match="soak is an automated check"):
        approve(by="alice", run_id=run_id, step="checklist", items=["soak"], clock=clock)


def test_a_quorum_counts_distinct_people(setup):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    run_id = start(setup, clock).run_id
    approve(by="carol", run_id=run_id, step="checklist", items=["smoke"], clock=clock)
    approve(by="alice", run_id=run_id, gate="cab", clock=clock)
    approve(by="alice", run_id=run_id, gate="cab", note="again", clock=clock)
    waiting = api.resume(run_id=run_id, clock=clock)
    assert waiting.status == "waiting"
    assert "1 of 2 approvals (alice)" in gate_detail(waiting)
    approve(by="bob", run_id=run_id, gate="cab", clock=clock)
    assert api.resume(run_id=run_id, clock=clock).status == "done"


def test_approvals_given_to_a_plan_count_only_for_that_plan(setup):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    planned = api.plan(runbook=setup["golive"], params={"tag": "v1"}, user="alice",
                       clock=clock)
    for person in ("bob", "carol"):
        approve(by=person, plan_hash=planned.plan.hash[:12], gate="cab", ticket="CHG-7",
                clock=clock)
    # Another tag: another plan, the approvals do not count, and it says why.
    other = start(setup, clock, tag="v2")
    assert other.status == "waiting"
    detail = gate_detail(other)
    assert "0 of 2 approvals" in detail
    assert f"bob approved plan {planned.plan.hash[:12]}, not this one: tag was 'v1', " \
           "now 'v2'" in detail
    api.abort(run_id=other.run_id)
    # The same inputs: the same hash, the approvals count.
    same = start(setup, clock, tag="v1")
    approve(by="alice", run_id=same.run_id, step="checklist", items=["smoke"], clock=clock)
    done = api.resume(run_id=same.run_id, clock=clock)
    assert done.status == "done", done.message


def test_an_expired_approval_does_not_count(setup):
    clock = FakeClock(T0)
    run_id = start(setup, clock).run_id
    for person in ("alice", "bob"):
        approve(by=person, run_id=run_id, gate="cab", clock=clock)
    later = FakeClock(T0 + timedelta(hours=24, minutes=1))
    waiting = api.resume(run_id=run_id, clock=later)
    assert "alice's approval expired at 2026-01-02T10:30:00+00:00" in gate_detail(waiting)
    assert "0 of 2 approvals" in gate_detail(waiting)


def test_soak_and_window_fail_and_pass_with_the_clock(setup):
    early = FakeClock(T0)  # before staging's soak and outside the window
    soaked(setup, early, hours=5)
    run_id = start(setup, early).run_id
    for person in ("alice", "bob"):
        approve(by=person, run_id=run_id, gate="cab", clock=early)
    approve(by="carol", run_id=run_id, step="checklist", items=["smoke"], clock=early)
    failed = api.resume(run_id=run_id, clock=early)
    assert failed.status == "failed"
    assert "soak: staging has run app:v1 since" in failed.message
    assert "(5.0 h of 24 h)" in failed.message
    assert "window: now (2026-01-01T10:30+00:00) is outside the live maintenance windows; " \
           "next: 2026-01-02T10:00:00Z – 2026-01-02T14:00:00Z" in failed.message
    in_window = FakeClock(T0 + timedelta(days=1))  # 29 h after staging's release
    for person in ("alice", "bob"):  # the first approvals expired meanwhile
        approve(by=person, run_id=run_id, gate="cab", clock=in_window)
    assert api.resume(run_id=run_id, clock=in_window).status == "done"


def test_a_rollback_restarts_the_soak(setup):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    from engine.store import HistoryRecord, open_store

    rolled_back_at = (clock.now() - timedelta(hours=1)).isoformat()
    store = open_store()
    store.add_history(HistoryRecord(at=rolled_back_at, run_id="rb", user="erin",
                                    kind="rollback", env="staging",
                                    data={"image": "app:v0", "digest": "sha256:00"}))
    store.close()
    plan = api.plan(runbook=setup["golive"], params={"tag": "v1"}, clock=clock)
    soak = next(s for s in plan.dry_run.steps if s.step_id == "checklist").result["items"]["soak"]
    assert not soak["passed"]
    assert soak["detail"] == (f"staging has run app:v0 (sha256:00) since {rolled_back_at}, its "
                              "last recorded rollback (1.0 h of 24 h)")


def test_a_change_whose_image_is_not_recorded_proves_no_soak(setup):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    from engine.store import HistoryRecord, open_store

    store = open_store()
    store.add_history(HistoryRecord(at=(clock.now() - timedelta(hours=1)).isoformat(),
                                    run_id="rb", user="erin", kind="rollback", env="staging"))
    store.close()
    plan = api.plan(runbook=setup["golive"], params={"tag": "v1"}, clock=clock)
    soak = next(s for s in plan.dry_run.steps if s.step_id == "checklist").result["items"]["soak"]
    assert not soak["passed"]
    assert "to an image that was not recorded" in soak["detail"]


def test_live_needs_the_cab_gate(setup, isolated):
    no_gate = dict(INVENTORY, checklists={"go-live": [{"id": "smoke", "text": "Smoke"}]})
    setup["inventory"].write_text(yaml.safe_dump(no_gate))
    with pytest.raises(InvalidInput, match="a run into live needs the cab gate"):
        api.plan(runbook=setup["golive"], params={"tag": "v1"})
    assert api.plan(runbook=setup["golive"], params={"tag": "v1", "env": "staging"})


def test_the_plan_shows_each_items_evidence(setup, runbook_cli):
    result = runbook_cli("plan", setup["golive"], "--tag", "v1")
    assert result.code == 0
    assert "[ ] cab: CAB approval — 0 of 2 approvals" in result.out
    assert "[ ] soak: Staging verified 24 h — no promotion of staging is recorded" in result.out
    assert "[ ] smoke: Smoke tests passed — not attested yet" in result.out


def test_status_shows_the_evidence_stored_with_the_run(setup, runbook_cli):
    clock = FakeClock(T0 + timedelta(days=1))
    soaked(setup, clock)
    run_id = start(setup, clock).run_id
    approve(by="alice", run_id=run_id, gate="cab", ticket="CHG-7", clock=clock)
    api.resume(run_id=run_id, clock=clock)
    shown = runbook_cli("status", run_id)
    assert "[ ] cab: 1 of 2 approvals (alice)" in shown.out
    assert "[✓] soak: staging has run app:v1 since" in shown.out
    assert "[✓] window: inside the live window" in shown.out
    stored = runbook_cli("status", run_id, "--output", "json").json()["steps"][0]["result"]
    assert stored["items"]["cab"]["approvals"][0]["ticket"] == "CHG-7"
