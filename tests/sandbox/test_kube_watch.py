"""Watches on the Kubernetes emulator, through the kubernetes client's watch: the events
after a resourceVersion, only for the objects the field selector names, until timeoutSeconds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from engine.sandbox.kube import Cluster
from engine.sandbox.kube_http import KubeServer


def _deployment(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeServer, client.AppsV1Api]]:
    server = KubeServer(("127.0.0.1", 0), Cluster(rollout_delay=3600))
    server.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server.url}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    api = config.new_client_from_config(str(kubeconfig))
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "app"}})
    apps = client.AppsV1Api(api)
    for name in ("api", "worker"):
        apps.create_namespaced_deployment("app", _deployment(name))
    yield server, apps
    server.shutdown()


def test_a_watch_streams_the_changes_of_the_named_deployment(cluster: Any) -> None:
    server, apps = cluster
    start = apps.read_namespaced_deployment("api", "app").metadata.resource_version
    events: list[tuple[str, str, str]] = []
    stream = watch.Watch().stream(apps.list_namespaced_deployment, "app",
                                  field_selector="metadata.name=api", resource_version=start,
                                  timeout_seconds=600)

    def change() -> None:
        with server.watched:
            server.watched.wait_for(lambda: server.watch_requests >= 1)
        apps.patch_namespaced_deployment("worker", "app", {"spec": {"replicas": 3}})
        apps.patch_namespaced_deployment("api", "app", {"spec": {"replicas": 2}})

    threading.Thread(target=change).start()
    for event in stream:
        dep = event["object"]
        events.append((event["type"], dep.metadata.name, str(dep.spec.replicas)))
        if dep.spec.replicas == 2:
            break
    assert events == [("MODIFIED", "api", "2")]


def test_a_watch_from_the_start_sends_what_exists(cluster: Any) -> None:
    _, apps = cluster
    events = list(watch.Watch().stream(apps.list_namespaced_deployment, "app",
                                       timeout_seconds=1))  # then the server ends it
    assert sorted((e["type"], e["object"].metadata.name) for e in events) == \
        [("ADDED", "api"), ("ADDED", "worker")]


def test_a_list_selects_on_the_name_and_refuses_other_fields(cluster: Any) -> None:
    _, apps = cluster
    found = apps.list_namespaced_deployment("app", field_selector="metadata.name=worker")
    assert [d.metadata.name for d in found.items] == ["worker"]
    with pytest.raises(ApiException) as err:
        apps.list_namespaced_deployment("app", field_selector="status.phase=Running")
    assert err.value.status == 400
