"""Staging's monitoring verifies the hotfix and the promotion to live: the sandbox's real
Prometheus scrapes what the emulated staging serves, and the release-health analysis (error
ratio, p99 latency) decides."""

from __future__ import annotations

import pytest

from engine.sandbox import prometheus
from tests.runbooks.test_promote import soaked
from tests.runbooks.test_promote_approvals import attest_items, plan_approved
from tests.runbooks.test_promote_approvals import start as start_promotion
from tests.world import deployment, ecr_tags, image

pytestmark = pytest.mark.skipif(
    prometheus.binary() is None,
    reason="prometheus is not installed (apt-get install prometheus): the sandbox runs none")

REASON = "CVE-2026-1234 in session handling"


def approved_hotfix(runbook_cli, tag: str) -> str:
    first = runbook_cli("run", "hotfix", "--tag", tag, "--reason", REASON,
                        "--verify-minutes", "1")
    assert first.code == 3, first.out
    run_id = first.out.split()[1]
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol").code == 0
    return run_id


def step_result(runbook_cli, run_id: str, step_id: str) -> dict:
    steps = runbook_cli("status", run_id, "--output", "json").json()["steps"]
    return next(s for s in steps if s["step_id"] == step_id)


def test_a_healthy_hotfix_passes_staging_s_analysis_with_the_values_as_evidence(
        sandbox, runbook_cli):
    assert sandbox["prometheus_url"]
    run_id = approved_hotfix(runbook_cli, "1.4.3")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert deployment("live")["image"] == image("live-1.4.3")
    step = step_result(runbook_cli, run_id, "verify-metrics")
    result = step["result"]
    assert result["passed"] is True and result["prometheus"] == sandbox["prometheus_url"]
    assert result["args"] == {"env": "staging", "image": image("staging-1.4.3")}
    metrics = {m["name"]: m for m in result["metrics"]}
    assert set(metrics) == {"error-ratio", "p99-latency"}
    errors = metrics["error-ratio"]
    assert errors["phase"] == "successful"
    assert f'image="{image("staging-1.4.3")}"' in errors["query"]
    measured = [m for m in errors["measurements"] if m["phase"] != "error"]
    assert [m["value"] for m in measured] == [0.0, 0.0, 0.0]
    assert all(m["at"] for m in errors["measurements"])
    # Every request of a healthy release takes 40 ms: its p99 is within the first bucket.
    latency = [m["value"] for m in metrics["p99-latency"]["measurements"]
               if m["phase"] == "successful"]
    assert len(latency) == 3 and all(0 < v <= 0.05 for v in latency)
    assert "error-ratio 3 of 3 measurements passed result < 0.01" in done.out
    record = runbook_cli("history", "--kind", "hotfix", "--env", "live", "--output",
                         "json").json()[0]
    assert record["data"]["monitoring"] == result["summary"]


def test_a_release_serving_errors_fails_its_analysis_and_staging_is_rolled_back(
        sandbox, runbook_cli):
    run_id = approved_hotfix(runbook_cli, "1.4.5-errors")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1, failed.out
    # Its health URL answered 200 all along: the verification window passed, monitoring did not.
    assert "✓ verify ok" in failed.out
    assert "error-ratio failed: 1 of 1 measurements failed result < 0.01" in failed.out
    assert "✓ staging-rollback ok" in failed.out
    assert deployment("staging")["image"] == image("staging-1.4.1")
    assert deployment("live")["image"] == image("live-1.4.0")
    assert "live-1.4.5-errors" not in ecr_tags()
    step = step_result(runbook_cli, run_id, "verify-metrics")
    assert step["status"] == "failed"
    errors = next(m for m in step["result"]["metrics"] if m["name"] == "error-ratio")
    assert errors["phase"] == "failed"
    # Three requests in ten answered 500: what Prometheus computed, stored with its time.
    last = errors["measurements"][-1]
    assert last["phase"] == "failed" and last["value"] == pytest.approx(0.3)
    assert last["at"]
    rollback = runbook_cli("history", "--env", "staging", "--output", "json").json()[0]
    assert (rollback["kind"], rollback["data"]["image"]) == ("rollback", image("staging-1.4.1"))


def test_promoting_to_live_verifies_staging_s_monitoring_of_the_image_it_promotes(
        sandbox, runbook_cli):
    soaked("staging")
    plan = plan_approved(runbook_cli)
    checklist = next(s for s in plan["steps"] if s["id"] == "checklist")
    planned = checklist["dry_run"]["result"]["items"]["monitoring-verified"]
    assert planned["passed"] is False and "measured when the run reaches this step" in \
        planned["detail"]
    run_id = start_promotion(runbook_cli)
    attest_items(runbook_cli, run_id, "live")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert "[✓] monitoring-verified: Monitoring verified — analysis release-health" in done.out
    assert deployment("live")["image"] == image("live-1.4.1")
    item = step_result(runbook_cli, run_id, "checklist")["result"]["items"][
        "monitoring-verified"]
    assert item["passed"] is True and item["kind"] == "check"
    analysis = item["analysis"]
    assert analysis["args"]["image"] == image("staging-1.4.1")
    errors = next(m for m in analysis["metrics"] if m["name"] == "error-ratio")
    assert [m["value"] for m in errors["measurements"] if m["phase"] != "error"] == [0.0] * 3
