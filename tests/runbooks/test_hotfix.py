"""The hotfix runbook in the sandbox."""

from __future__ import annotations

import re

from tests.runbooks.killing import kill_during
from tests.world import (
    deployment,
    ecr_tags,
    image,
    overlay_commits,
    overlay_is_committed,
    rendered_image,
    snapshot,
)

REASON = "CVE-2026-1234 in session handling"


def start(runbook_cli, tag: str, *extra: str) -> str:
    first = runbook_cli("run", "hotfix", "--tag", tag, "--reason", REASON,
                        "--verify-minutes", "1", *extra)
    assert first.code == 3, first.out
    return first.out.split()[1]


def test_a_hotfix_reaches_live_only_after_the_emergency_cab_approval_and_verification(
        sandbox, runbook_cli):
    # Nothing is deployed before the emergency CAB approval, which the starter cannot give.
    before = snapshot(sandbox)
    run_id = start(runbook_cli, "1.4.3")
    assert runbook_cli("resume", run_id).code == 3
    own = runbook_cli("approve", run_id, "--gate", "cab", "--by", "tester")
    assert own.code == 2
    assert snapshot(sandbox) == before

    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol",
                       "--ticket", "EC-77").code == 0
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert deployment("staging")["image"] == image("staging-1.4.3")
    assert deployment("live")["image"] == image("live-1.4.3")
    tags = ecr_tags()
    assert tags["live-1.4.3"] == tags["staging-1.4.3"] == tags["1.4.3"]
    assert "healthy for" in done.out and "1 checks passing" in done.out
    assert "    git checkout develop\n    git merge hotfix/1.4.3\n" in done.out
    commits = overlay_commits(sandbox)
    assert commits[0].startswith(f"Hotfix 1.4.3 to live: {REASON}")
    assert commits[1].startswith(f"Hotfix 1.4.3 to staging: {REASON}")
    record = runbook_cli("history", "--kind", "hotfix", "--output", "json").json()[0]
    data = record["data"]
    assert (data["tag"], data["reason"], data["approved_by"]) == ("1.4.3", REASON, "carol")
    assert data["started_at"] < data["approved_at"] <= data["staging_at"] < \
        data["verified_at"] < data["live_at"]
    assert (data["image"], data["digest"]) == (image("live-1.4.3"), tags["1.4.3"])
    assert rendered_image(sandbox, "staging") == image("staging-1.4.3")
    assert rendered_image(sandbox, "live") == image("live-1.4.3")
    assert runbook_cli("drift").code == 0
    # Staging's soak is of the hotfix now: its image and digest, since its deploy.
    staging = runbook_cli("history", "--env", "staging", "--output", "json").json()[0]
    assert (staging["kind"], staging["data"]["image"], staging["data"]["digest"]) == \
        ("hotfix", image("staging-1.4.3"), tags["1.4.3"])
    plan = runbook_cli("plan", "promote", "--from", "staging", "--to", "live", "--output", "json")
    checklist = next(s for s in plan.json()["steps"] if s["id"] == "checklist")
    soak = checklist["dry_run"]["result"]["items"]["staging-soak"]
    assert soak["image"] == image("staging-1.4.3") and soak["digest"] == tags["1.4.3"]
    assert soak["since"] == staging["at"] and soak["kind"] == "hotfix"


def test_a_failed_verification_rolls_staging_back_and_leaves_live_alone(sandbox, runbook_cli):
    run_id = start(runbook_cli, "1.4.4-crashloop")
    runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1, failed.out
    assert "verification failed" in failed.out
    assert "✓ staging-rollback ok" in failed.out
    assert deployment("staging")["image"] == image("staging-1.4.1")
    assert deployment("live")["image"] == image("live-1.4.0")
    assert "live-1.4.4-crashloop" not in ecr_tags()
    assert re.search(rf"run {run_id} cannot succeed: step verify failed and "
                     r"staging-rollback(, staging-rollback-[a-z]+)* undid its change, so "
                     r"resuming would only fail again; "
                     rf"end it with: runbook abort {run_id}", failed.out), failed.out
    assert "resume with" not in failed.out

    # Staging's overlay and history say what staging runs: the image it was rolled back to.
    assert rendered_image(sandbox, "staging") == deployment("staging")["image"] == \
        image("staging-1.4.1")
    assert rendered_image(sandbox, "live") == deployment("live")["image"] == image("live-1.4.0")
    assert overlay_is_committed(sandbox)
    assert overlay_commits(sandbox)[0].startswith(
        f"Hotfix 1.4.4-crashloop failed in staging: back to {image('staging-1.4.1')}")
    tags = ecr_tags()
    rollback, hotfix = runbook_cli("history", "--env", "staging", "--output", "json").json()
    assert (rollback["kind"], rollback["data"]["image"], rollback["data"]["digest"]) == \
        ("rollback", image("staging-1.4.1"), tags["staging-1.4.1"])
    assert (hotfix["kind"], hotfix["data"]["image"], hotfix["data"]["digest"]) == \
        ("hotfix", image("staging-1.4.4-crashloop"), tags["staging-1.4.4-crashloop"])
    drift = runbook_cli("drift")
    assert drift.code == 0, drift.out

    again = runbook_cli("resume", run_id)  # resuming cannot sneak it into live
    assert again.code == 1
    assert deployment("live")["image"] == image("live-1.4.0")


def test_sigkill_during_verification_then_resume(sandbox, runbook_cli):
    run_id = start(runbook_cli, "1.4.3")
    runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol")
    kill_during("verify", "resume", run_id)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert deployment("live")["image"] == image("live-1.4.3")
