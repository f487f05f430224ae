"""db-restore against moto's server in the sandbox."""

from __future__ import annotations

import boto3

from tests.runbooks.killing import kill_during


def restored(env: str) -> list[dict]:
    rds = boto3.client("rds")
    return [i for i in rds.describe_db_instances()["DBInstances"]
            if i["DBInstanceIdentifier"] == f"quikapp-{env}-restored"]


def test_plan_shows_the_snapshot_time_and_the_data_loss_window(in_shared_sandbox, runbook_cli):
    plan = runbook_cli("plan", "db-restore", "--env", "qa", "--snapshot-id",
                       "quikapp-qa-nightly")
    assert plan.code == 0, plan.out
    assert "snapshot quikapp-qa-nightly of quikapp-qa taken 20" in plan.out
    assert "data-loss window: 0 h 0" in plan.out
    assert restored("qa") == []


def test_restore_from_the_latest_snapshot(sandbox, runbook_cli):
    result = runbook_cli("run", "db-restore", "--env", "uat2", "--latest")
    assert result.code == 0, result.out
    (instance,) = restored("uat2")
    assert instance["DBInstanceStatus"] == "available"
    history = runbook_cli("history", "--kind", "db-restore", "--output", "json").json()
    assert history[0]["data"]["instance"] == "quikapp-uat2-restored"
    assert history[0]["data"]["endpoint"].startswith("quikapp-uat2-restored.")


def test_a_snapshot_of_another_environment_is_refused(in_shared_sandbox, runbook_cli):
    result = runbook_cli("run", "db-restore", "--env", "qa", "--snapshot-id",
                         "quikapp-live-nightly")
    assert result.code == 2
    assert "snapshot quikapp-live-nightly is of quikapp-live, not of quikapp-qa" in result.out
    missing = runbook_cli("run", "db-restore", "--env", "qa", "--snapshot-id", "nope")
    assert missing.code == 2 and "snapshot nope does not exist" in missing.out
    assert restored("qa") == []


def test_exactly_one_of_snapshot_id_and_latest(in_shared_sandbox, runbook_cli):
    for args in ([], ["--snapshot-id", "quikapp-qa-nightly", "--latest"]):
        result = runbook_cli("run", "db-restore", "--env", "qa", *args)
        assert result.code == 2
        assert "give exactly one of --snapshot-id ID or --latest" in result.err


def test_sigkill_during_the_restore_then_resume(sandbox, runbook_cli):
    run_id = kill_during("restore", "run", "db-restore", "--env", "dev", "--latest")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    (instance,) = restored("dev")
    tags = {t["Key"]: t["Value"] for t in instance.get("TagList", [])}
    assert tags["restored-from"] == "quikapp-dev-nightly" and tags["runbook-run"] == run_id
