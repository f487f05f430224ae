"""runbook drift, and promote refusing an environment whose overlay, cluster and history
disagree, in the sandbox."""

from __future__ import annotations

from tests.world import ENVS, deployment, image, kubectl, rendered_image, snapshot


def set_image_by_hand(env: str, tag: str) -> None:
    kubectl("set", "image", f"deployment/{env}-quikapp-api", f"api={image(tag)}",
            "-n", f"quikapp-{env}")


def test_every_environment_agrees_in_a_fresh_sandbox(in_shared_sandbox, runbook_cli):
    result = runbook_cli("drift", "--output", "json")
    assert result.code == 0, result.out
    rows = result.json()
    assert [r["env"] for r in rows] == ENVS  # the inventory's order
    for row in rows:
        assert row["agrees"] and row["problems"] == []
        assert row["overlay"] == row["cluster"] == deployment(row["env"])["image"]
        assert row["history"] is None


def test_a_hand_made_set_image_is_drift_and_promote_into_it_is_refused(sandbox, runbook_cli):
    set_image_by_hand("staging", "staging-1.4.0")
    drift = runbook_cli("drift")
    assert drift.code == 1
    assert (f"staging: the overlay renders {image('staging-1.4.1')}, the cluster runs "
            f"{image('staging-1.4.0')}") in drift.out
    assert "drift in staging" in drift.out
    assert runbook_cli("drift", "--env", "live").code == 0

    before = snapshot(sandbox)
    for command in ("plan", "run"):
        refused = runbook_cli(command, "promote", "--from", "uat1", "--to", "staging")
        assert refused.code == 2, refused.out
        assert "promote refused: staging: the overlay renders" in refused.err
        assert "--accept-drift" in refused.err
    assert runbook_cli("status", "--output", "json").json() == []  # nothing recorded
    assert runbook_cli("lock", "list", "--output", "json").json() == []
    assert snapshot(sandbox) == before
    # Another environment has not drifted: its promotions go on.
    assert runbook_cli("plan", "promote", "--from", "qa", "--to", "uat1").code == 0


def test_accept_drift_goes_on_and_is_recorded(sandbox, runbook_cli):
    set_image_by_hand("staging", "staging-1.4.0")
    plan = runbook_cli("plan", "promote", "--from", "uat1", "--to", "staging", "--accept-drift")
    assert plan.code == 0, plan.out
    assert (f"DRIFT staging: the overlay renders {image('staging-1.4.1')}, the cluster runs "
            f"{image('staging-1.4.0')}") in plan.out
    started = runbook_cli("run", "promote", "--from", "uat1", "--to", "staging",
                          "--accept-drift")
    assert started.code == 3, started.out  # at the checklist, as without drift
    run_id = started.out.split()[1]
    events = runbook_cli("status", run_id, "--output", "json").json()["events"]
    accepted = [e for e in events if e["kind"] == "accept-drift"]
    assert len(accepted) == 1 and accepted[0]["detail"]["by"] == "tester"
    assert accepted[0]["detail"]["drift"][0]["env"] == "staging"
    assert accepted[0]["detail"]["drift"][0]["cluster"] == image("staging-1.4.0")
    journal = runbook_cli("audit", "export", "--run", run_id).out
    assert "accept-drift" in journal


def test_a_history_that_disagrees_with_the_cluster_is_drift(in_shared_sandbox, runbook_cli):
    from engine.store import HistoryRecord, open_store

    store = open_store()
    store.add_history(HistoryRecord(at="2026-11-26T11:58:00+00:00", run_id="earlier",
                                    user="dave", kind="promotion", env="qa",
                                    data={"image": image("qa-1.4.2")}))
    store.close()
    drift = runbook_cli("drift", "--env", "qa")
    assert drift.code == 1
    assert ("qa: the last recorded change (promotion at 2026-11-26T11:58:00+00:00, run "
            f"earlier) is to {image('qa-1.4.2')}, the cluster runs {image('qa-1.5.0')}") \
        in drift.out
    assert rendered_image(in_shared_sandbox, "qa") == image("qa-1.5.0")  # the overlay agrees


def test_an_unknown_environment_is_invalid_input(in_shared_sandbox, runbook_cli):
    result = runbook_cli("drift", "--env", "prod")
    assert result.code == 2
    assert "unknown environment prod" in result.err
