"""Approvals of promote are for one deployment: the plan hash binds the image's digest and the
target's state, a plan approval is used up by one run, the digest is checked again right
before the retag, and staging's soak counts only for the image staging runs now."""

from __future__ import annotations

import os
import subprocess

import boto3

from engine.store import open_store
from tests.runbooks.test_promote import checklist, soaked
from tests.world import KUBECTL_HOME, deployment, ecr_tags, image

REPO = "quikapp/api"


def attest_items(runbook_cli, run_id: str, dst: str) -> None:
    """Every item people attest, by alice and bob; gates are left to each test."""
    items = checklist(dst)
    half = len(items) // 2
    for person, mine in (("alice", items[:half]), ("bob", items[half:])):
        args = [a for item in mine for a in ("--item", item)]
        done = runbook_cli("approve", run_id, "--step", "checklist", "--by", person, *args)
        assert done.code == 0, done.err


def plan_approved(runbook_cli, src: str = "staging", dst: str = "live") -> dict:
    """Plan the promotion and have bob and carol approve its CAB gate (CHG-100)."""
    plan = runbook_cli("plan", "promote", "--from", src, "--to", dst, "--output", "json").json()
    for person in ("bob", "carol"):
        given = runbook_cli("approve", "--plan", plan["plan_hash"][:12], "--gate", "cab",
                            "--by", person, "--ticket", "CHG-100")
        assert given.code == 0, given.err
    return plan


def start(runbook_cli, src: str = "staging", dst: str = "live") -> str:
    first = runbook_cli("run", "promote", "--from", src, "--to", dst)
    assert first.code == 3, first.out + first.err
    return first.out.split()[1]


def move_tag(tag: str, to: str) -> None:
    """Point ``tag`` at the image ``to`` points at (deleted and pushed again)."""
    ecr = boto3.client("ecr")
    manifest = ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": to}])
    ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": tag}])
    ecr.put_image(repositoryName=REPO, imageTag=tag,
                  imageManifest=manifest["images"][0]["imageManifest"])


def set_image(env: str, tag: str) -> None:
    subprocess.run(["kubectl", "set", "image", f"deployment/{env}-quikapp-api",
                    f"api={image(tag)}", "-n", f"quikapp-{env}"], check=True,
                   capture_output=True, env={**os.environ, "HOME": KUBECTL_HOME})


def gate_detail(runbook_cli, run_id: str) -> str:
    steps = runbook_cli("status", run_id, "--output", "json").json()["steps"]
    check = next(s for s in steps if s["step_id"] == "checklist")
    return check["result"]["items"]["cab-approval"]["detail"]


def test_the_plan_shows_and_binds_the_image_and_the_target(sandbox, runbook_cli):
    plan = runbook_cli("plan", "promote", "--from", "staging", "--to", "live",
                       "--output", "json").json()
    assert plan["bound"] == {"source_tag": "staging-1.4.1",
                             "source_digest": ecr_tags()["staging-1.4.1"],
                             "target_tag": "live-1.4.1",
                             "target_image": image("live-1.4.0"),
                             "target_revision": deployment("live")["revision"]}
    # Planned again with nothing changed, in each of the other forms: the same hash.
    text = runbook_cli("plan", "promote", "--from", "staging", "--to", "live").out
    assert f"source_digest: {ecr_tags()['staging-1.4.1']}" in text
    assert f"(hash {plan['plan_hash'][:16]})" in text
    markdown = runbook_cli("plan", "promote", "--from", "staging", "--to", "live",
                           "--output", "markdown").out
    assert "## Bound values" in markdown and "| `target_revision` |" in markdown
    assert f"- **Plan hash:** `{plan['plan_hash']}`" in markdown
    set_image("staging", "staging-1.4.0")
    moved = runbook_cli("plan", "promote", "--from", "staging", "--to", "live",
                        "--output", "json").json()
    assert moved["plan_hash"] != plan["plan_hash"]
    assert moved["bound"]["source_digest"] == ecr_tags()["staging-1.4.0"]


def test_a_plan_approval_is_used_up_by_the_first_run(sandbox, runbook_cli):
    soaked("staging")
    plan = plan_approved(runbook_cli)
    # live-1.4.1 already names another image: the first run passes its gate, then its retag
    # fails without changing anything, and it is aborted.
    move_tag("live-1.4.1", "1.4.3")
    first = start(runbook_cli)
    attest_items(runbook_cli, first, "live")
    failed = runbook_cli("resume", first)
    assert failed.code == 1 and "tags are immutable" in failed.out, failed.out
    detail = runbook_cli("status", first, "--output", "json").json()
    gate = next(s for s in detail["steps"] if s["step_id"] == "checklist")
    assert gate["status"] == "ok"
    assert sorted(u["by"] for u in gate["result"]["plan_approvals_used"]) == ["bob", "carol"]
    store = open_store()
    used = [j for j in store.journal(first) if j.kind == "plan-approval-used"]
    store.close()
    assert sorted(j.data["by"] for j in used) == ["bob", "carol"]
    assert {j.data["plan_hash"] for j in used} == {plan["plan_hash"]}
    assert runbook_cli("abort", first, "--by", "alice").code == 0

    second = start(runbook_cli)  # nothing changed: its plan has the same hash
    attest_items(runbook_cli, second, "live")
    waiting = runbook_cli("resume", second)
    assert waiting.code == 3, waiting.out
    status = runbook_cli("status", second).out
    for person in ("bob", "carol"):
        assert (f"{person}'s approval of plan {plan['plan_hash'][:12]} was already used by "
                f"run {first}") in status
    assert "0 of 2 approvals" in gate_detail(runbook_cli, second)
    # Approvals of its own let it through the gate.
    for person in ("bob", "carol"):
        assert runbook_cli("approve", second, "--gate", "cab", "--by", person,
                           "--ticket", "CHG-101").code == 0
    again = runbook_cli("resume", second)
    assert again.code == 1 and "tags are immutable" in again.out
    assert gate_detail(runbook_cli, second).startswith("2 of 2 approvals (bob, carol)")
    assert deployment("live")["image"] == image("live-1.4.0")


def test_a_plan_approved_before_the_source_digest_moved_does_not_count(sandbox, runbook_cli):
    soaked("staging")
    plan = plan_approved(runbook_cli)
    approved = plan["bound"]["source_digest"]
    move_tag("staging-1.4.1", "1.4.3")  # same tag, another image
    now = ecr_tags()["staging-1.4.1"]
    assert now != approved
    run_id = start(runbook_cli)
    attest_items(runbook_cli, run_id, "live")
    waiting = runbook_cli("resume", run_id)
    assert waiting.code == 3
    detail = gate_detail(runbook_cli, run_id)
    assert detail.startswith("0 of 2 approvals")
    assert (f"bob approved plan {plan['plan_hash'][:12]}, not this one: source_digest was "
            f"'{approved}' when the plan was made, now '{now}'") in detail
    assert deployment("live")["image"] == image("live-1.4.0")


def test_staging_changed_by_hand_fails_the_soak_and_the_plan_approval(sandbox, runbook_cli):
    soaked("staging")  # staging got staging-1.4.1 25 hours ago
    plan = plan_approved(runbook_cli)
    set_image("staging", "staging-1.4.0")
    failed = runbook_cli("run", "promote", "--from", "staging", "--to", "live")
    assert failed.code == 1, failed.out
    assert (f"staging-soak: staging runs {image('staging-1.4.0')} now, not "
            f"{image('staging-1.4.1')} of its last recorded promotion") in failed.out
    run_id = failed.out.split()[1]
    detail = gate_detail(runbook_cli, run_id)
    assert f"carol approved plan {plan['plan_hash'][:12]}, not this one: " in detail
    assert "source_tag was 'staging-1.4.1' when the plan was made, now 'staging-1.4.0'" in detail
    assert deployment("live")["image"] == image("live-1.4.0")


def test_the_digest_is_checked_again_right_before_the_retag(sandbox, runbook_cli):
    before = ecr_tags()
    run_id = start(runbook_cli, "uat1", "staging")  # read uat1-1.4.2, stopped at the checklist
    approved = before["uat1-1.4.2"]
    move_tag("uat1-1.4.2", "1.5.1")
    now = ecr_tags()["uat1-1.4.2"]
    attest_items(runbook_cli, run_id, "staging")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1
    assert (f"image quikapp/api:uat1-1.4.2 is now {now}, not the approved {approved}: "
            "refusing to deploy it") in failed.out
    assert "staging-1.4.2" not in ecr_tags()
    assert deployment("staging")["image"] == image("staging-1.4.1")
