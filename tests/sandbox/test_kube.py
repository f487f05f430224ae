"""The Kubernetes emulator, over HTTP, through the kubernetes client and kubectl."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import config, dynamic
from kubernetes.client.exceptions import ApiException

from engine.sandbox.kube import Cluster
from engine.sandbox.kube_http import KubeServer

DELAY = 0.2


@pytest.fixture
def api(tmp_path: Path) -> Iterator[dynamic.DynamicClient]:
    cluster = Cluster(rollout_delay=DELAY, crash_after=DELAY * 3)
    server = KubeServer(("127.0.0.1", 0), cluster)
    server.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server.url}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    os.environ["KUBECONFIG"] = str(kubeconfig)
    dyn = dynamic.DynamicClient(config.new_client_from_config(str(kubeconfig)))
    dyn.resources.get(api_version="v1", kind="Namespace").create(
        body={"metadata": {"name": "app"}})
    yield dyn
    server.shutdown()
    del os.environ["KUBECONFIG"]


def deployment_body(image: str) -> dict:
    return {"metadata": {"name": "api"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"containers": [{"name": "api", "image": image}]}}}}


def set_image(deps, image: str) -> None:
    deps.patch(name="api", namespace="app",
               body={"spec": {"template": {"spec": {"containers": [
                   {"name": "api", "image": image}]}}}},
               content_type="application/strategic-merge-patch+json")


def revisions(api) -> dict[str, tuple[str, int]]:
    rss = api.resources.get(api_version="apps/v1", kind="ReplicaSet").get(namespace="app")
    return {rs.metadata.annotations["deployment.kubernetes.io/revision"]:
            (rs.spec.template.spec.containers[0].image, rs.spec.replicas) for rs in rss.items}


def test_template_changes_make_revisions_and_status_converges(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1"), namespace="app")
    set_image(deps, "img:2")
    dep = deps.get(name="api", namespace="app")
    assert dep.metadata.generation == 2
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert dep.status.observedGeneration != 2 and dep.status.updatedReplicas == 0
    time.sleep(DELAY * 3)
    dep = deps.get(name="api", namespace="app")
    assert (dep.status.observedGeneration, dep.status.updatedReplicas,
            dep.status.availableReplicas) == (2, 2, 2)
    assert revisions(api) == {"1": ("img:1", 0), "2": ("img:2", 2)}
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace="app",
                                                              label_selector="app=api")
    assert sorted(p.spec.containers[0].image for p in pods.items) == ["img:2", "img:2"]


def test_rollback_reuses_the_old_replicaset_with_the_next_revision(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1"), namespace="app")
    set_image(deps, "img:2")
    set_image(deps, "img:1")
    assert revisions(api) == {"3": ("img:1", 2), "2": ("img:2", 0)}
    dep = deps.get(name="api", namespace="app")
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


def test_unchanged_spec_keeps_generation(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1"), namespace="app")
    set_image(deps, "img:1")
    dep = deps.get(name="api", namespace="app")
    assert dep.metadata.generation == 1 and len(revisions(api)) == 1


def test_dry_run_changes_nothing(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1"), namespace="app")
    deps.patch(name="api", namespace="app", dry_run="All",
               body={"spec": {"replicas": 5}}, content_type="application/merge-patch+json")
    assert deps.get(name="api", namespace="app").spec.replicas == 2


def test_errors_are_kubernetes_status_objects(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    with pytest.raises(ApiException) as missing:
        deps.get(name="nope", namespace="app")
    assert missing.value.status == 404
    deps.create(body=deployment_body("img:1"), namespace="app")
    with pytest.raises(ApiException) as dup:
        deps.create(body=deployment_body("img:1"), namespace="app")
    assert dup.value.status == 409


def test_a_crashing_release_comes_up_then_crashes_once_its_service_is_probed(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1.0-crashloop"), namespace="app")
    deadline = time.monotonic() + 30
    while deps.get(name="api", namespace="app").status.availableReplicas != 2:
        assert time.monotonic() < deadline, "never came up"
        time.sleep(DELAY / 4)
    assert deps.get(name="api", namespace="app").status.availableReplicas == 2  # still up
    health = api.client.configuration.host + "/sandbox/health/app/api"
    with pytest.raises(urllib.error.HTTPError) as down:
        urllib.request.urlopen(health)
    assert down.value.code == 503
    dep = deps.get(name="api", namespace="app")
    assert dep.status.availableReplicas == 0 and dep.status.unavailableReplicas == 2
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace="app")
    assert all(p.status.containerStatuses[0].restartCount >= 1 for p in pods.items)


def test_kubectl_works_against_it(api):
    deps = api.resources.get(api_version="apps/v1", kind="Deployment")
    deps.create(body=deployment_body("img:1"), namespace="app")
    set_image(deps, "img:2")
    env = {**os.environ, "HOME": tempfile.mkdtemp()}
    out = subprocess.run(["kubectl", "rollout", "history", "deployment/api", "-n", "app"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "1         <none>" in out and "2         <none>" in out
    out = subprocess.run(["kubectl", "get", "deploy,rs", "-n", "app", "-o", "name"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "deployment.apps/api" in out and out.count("replicaset.apps/api-") == 2
