"""`runbook sandbox up|status|env|down` and what a new sandbox holds."""

from __future__ import annotations

import boto3

from engine.sandbox.seed import RELEASES
from tests.world import ENVS, deployment, ecr_tags, image, replicasets


def test_a_new_sandbox_is_seeded_like_the_guide(sandbox):
    tags = ecr_tags()
    for env, (previous, running) in RELEASES.items():
        dep = deployment(env)
        assert dep["image"] == image(f"{env}-{running}")
        assert dep["revision"] == "2" and dep["available"] > 0
        assert replicasets(env) == {"1": image(f"{env}-{previous}"),
                                    "2": image(f"{env}-{running}")}
        assert tags[f"{env}-{running}"] == tags[running]
    rds = boto3.client("rds")
    instances = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert instances == {f"quikapp-{e}" for e in ENVS}
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier="quikapp-live")["DBSnapshots"]
    assert "quikapp-live-nightly" in [s["DBSnapshotIdentifier"] for s in snaps]


def test_sandbox_commands(tmp_path, runbook_cli):
    where = str(tmp_path / "sb")
    up = runbook_cli("sandbox", "up", "--dir", where, "--rollout-delay", "0.2")
    try:
        assert up.code == 0
        assert "export KUBECONFIG=" in up.out and "export AWS_ENDPOINT_URL=http://127.0.0.1:" \
            in up.out and "export RUNBOOK_INVENTORY=" in up.out
        again = runbook_cli("sandbox", "up", "--dir", where)
        assert again.out == up.out  # already up: the same sandbox
        status = runbook_cli("sandbox", "status", "--dir", where, "--output", "json").json()
        assert status["kube_url"].startswith("http://127.0.0.1:")
        assert runbook_cli("sandbox", "env", "--dir", where).out == up.out
    finally:
        assert runbook_cli("sandbox", "down", "--dir", where).code == 0
    assert runbook_cli("sandbox", "status", "--dir", where).code == 1
