"""The promote tests against a real cluster and real AWS: whatever KUBECONFIG, the AWS
settings and RUNBOOK_INVENTORY point at (for example a kind cluster with the seven quikapp
namespaces). Opt in with RUNBOOK_TEST_CLUSTER=1; skipped otherwise."""

from __future__ import annotations

import os

import pytest

from tests.conftest import OUTER_ENV, POINTERS
from tests.runbooks.test_promote import base_tag, promote
from tests.world import deployment, ecr_tags

pytestmark = pytest.mark.cluster


@pytest.fixture
def real_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in POINTERS:
        if name in OUTER_ENV and name != "RUNBOOK_STATE":
            monkeypatch.setenv(name, OUTER_ENV[name])
    missing = [name for name in ("RUNBOOK_TEST_CLUSTER", "KUBECONFIG", "RUNBOOK_INVENTORY")
               if not OUTER_ENV.get(name)]
    if missing:
        pytest.skip("no real cluster configured: set " + ", ".join(missing) +
                    " (and AWS credentials) to run the promote tests against it")
    if os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1"):
        pytest.skip("AWS_ENDPOINT_URL points at a local sandbox, not a real AWS account")


def test_promote_uat1_to_staging_on_a_real_cluster(real_cluster, runbook_cli):
    source_tag = deployment("uat1")["image"].rsplit(":", 1)[1]
    target_tag = f"staging-{base_tag(source_tag, 'uat1')}"
    promote(runbook_cli, "uat1", "staging")
    assert deployment("staging")["image"].endswith(f":{target_tag}")
    tags = ecr_tags()
    assert tags[target_tag] == tags[source_tag]


def test_promoting_twice_changes_nothing_on_a_real_cluster(real_cluster, runbook_cli):
    promote(runbook_cli, "uat1", "staging")
    first = deployment("staging")
    promote(runbook_cli, "uat1", "staging")
    assert deployment("staging") == first
