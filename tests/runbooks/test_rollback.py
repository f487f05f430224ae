"""The rollback runbook in the sandbox."""

from __future__ import annotations

from tests.runbooks.killing import kill_during
from tests.world import (
    deployment,
    ecr_tags,
    image,
    overlay_commits,
    overlay_is_committed,
    rendered_image,
    replicasets,
    snapshot,
)


def test_plan_shows_the_history_and_the_target(in_shared_sandbox, runbook_cli):
    before = snapshot(in_shared_sandbox)
    plan = runbook_cli("plan", "rollback", "--env", "live")
    assert plan.code == 0, plan.out
    assert f"*   2  {image('live-1.4.0')}" in plan.out
    assert f"    1  {image('live-1.3.9')}" in plan.out
    assert f"will go back to revision 1 ({image('live-1.3.9')})" in plan.out
    assert snapshot(in_shared_sandbox) == before


def test_rollback_to_the_previous_revision(sandbox, runbook_cli):
    result = runbook_cli("run", "rollback", "--env", "live")
    assert result.code == 0, result.out
    dep = deployment("live")
    assert dep["image"] == image("live-1.3.9") and dep["revision"] == "3"
    assert replicasets("live") == {"2": image("live-1.4.0"), "3": image("live-1.3.9")}
    history = runbook_cli("history", "--env", "live", "--output", "json").json()
    assert history[0]["kind"] == "rollback"
    assert history[0]["data"]["from_image"] == image("live-1.4.0")
    assert history[0]["data"]["image"] == image("live-1.3.9")
    assert history[0]["data"]["digest"] == ecr_tags()["live-1.3.9"]


def test_after_a_rollback_the_overlay_renders_what_the_cluster_runs(sandbox, runbook_cli):
    result = runbook_cli("run", "rollback", "--env", "live")
    assert result.code == 0, result.out
    run_id = result.out.split()[1]
    assert rendered_image(sandbox, "live") == deployment("live")["image"] == image("live-1.3.9")
    assert overlay_is_committed(sandbox)
    assert overlay_commits(sandbox)[0] == (
        f"Roll live back to revision 1 ({image('live-1.3.9')}) (runbook run {run_id} by tester)")
    drift = runbook_cli("drift")
    assert drift.code == 0, drift.out
    assert "no drift" in drift.out


def test_rollback_to_a_given_revision(sandbox, runbook_cli):
    assert runbook_cli("run", "rollback", "--env", "qa").code == 0  # now at revision 3
    result = runbook_cli("run", "rollback", "--env", "qa", "--to-revision", "2")
    assert result.code == 0, result.out
    dep = deployment("qa")
    assert dep["image"] == image("qa-1.5.0") and dep["revision"] == "4"


def test_a_revision_that_does_not_exist_is_refused(in_shared_sandbox, runbook_cli):
    before = snapshot(in_shared_sandbox)
    missing = runbook_cli("run", "rollback", "--env", "staging", "--to-revision", "7")
    assert missing.code == 2
    assert "staging: revision 7 does not exist (revisions: 2, 1)" in missing.out
    running = runbook_cli("run", "rollback", "--env", "staging", "--to-revision", "2")
    assert running.code == 2
    assert "revision 2 is the one running now" in \
        runbook_cli("plan", "rollback", "--env", "staging", "--to-revision", "2").out
    assert snapshot(in_shared_sandbox) == before


def test_sigkill_during_the_undo_then_resume(sandbox, runbook_cli):
    run_id = kill_during("undo", "run", "rollback", "--env", "uat1")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    dep = deployment("uat1")
    assert dep["image"] == image("uat1-1.4.1") and dep["revision"] == "3"
    assert len(replicasets("uat1")) == 2


def test_the_overlay_follows_the_undo_and_the_audiences_are_told_before_the_wait():
    """Nothing stands between the undo and the overlay's commit: a message to a slow chat
    service (up to 40 s) or a crash while telling it would leave the overlay rolling forward
    on the next apply. The audiences hear of it while the rollout converges."""
    from engine import api

    ids = [step.id for step in api.load_runbook("rollback").steps]
    assert ids[ids.index("undo"):ids.index("wait-rollout") + 1] == [
        "undo", "overlay", "announce", "wait-rollout"]
