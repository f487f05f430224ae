"""The hotfix's checks before the emergency CAB is asked, and what its messages promise."""

from __future__ import annotations

from tests.world import image

REASON = "CVE-2026-1234 in session handling"


def nothing_waits(runbook_cli) -> None:
    runs = runbook_cli("status", "--output", "json").json()
    assert [r["status"] for r in runs if r["status"] == "waiting"] == []
    assert runbook_cli("lock", "list").out.strip() == "no environment is locked"


def test_a_tag_not_in_ecr_is_refused_before_any_approval(in_shared_sandbox, runbook_cli):
    refused = "image quikapp/api:1.4.33 is not in ECR: check the tag"
    plan = runbook_cli("plan", "hotfix", "--tag", "1.4.33", "--reason", REASON)
    assert plan.code == 2 and refused in plan.out
    run = runbook_cli("run", "hotfix", "--tag", "1.4.33", "--reason", REASON)
    assert run.code == 2, run.out
    assert f"refused: {refused}" in run.out
    assert "cab" not in [line.split()[1].rstrip(":") for line in run.out.splitlines()
                         if line.startswith("→")]
    assert "approve with" not in run.out + run.err
    nothing_waits(runbook_cli)


def test_a_branch_not_in_the_repository_is_refused_before_any_approval(in_shared_sandbox,
                                                                         runbook_cli):
    run = runbook_cli("run", "hotfix", "--tag", "1.4.3", "--reason", REASON,
                      "--branch", "hotfix/1.4.33")
    assert run.code == 2, run.out
    assert "branch hotfix/1.4.33 is not in " in run.out
    nothing_waits(runbook_cli)
    known = runbook_cli("run", "hotfix", "--tag", "1.4.3", "--reason", REASON,
                        "--branch", "hotfix/1.4.3")
    assert known.code == 3, known.out  # a branch that exists: on to the CAB


def test_the_plan_shows_the_rollback_target_the_run_uses(in_shared_sandbox, runbook_cli):
    plan = runbook_cli("plan", "hotfix", "--tag", "1.4.3", "--reason", REASON)
    assert plan.code == 0, plan.out
    running = image("staging-1.4.1")  # what the sandbox's staging runs
    assert f"if the change fails, it goes back to revision 2 ({running}), the one running now" \
        in plan.out
    assert "will go back to revision" not in plan.out
