"""Drift: whether an environment's overlay, its cluster and the engine's history agree on the
image it runs.

Three records of one fact can part: a change made on the cluster alone (``kubectl set
image``, an undo by hand) leaves the overlay behind, and the next ``kubectl apply -k`` quietly
changes what runs; a change the history does not know of makes soak evidence vouch for an
image that is not running. Runbooks that change what an environment runs look here first.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.gates import CHANGE_KINDS
from engine.store import HistoryRecord, StateStore

RENDER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Drift:
    """What each of the three says an environment runs, and how they disagree."""

    env: str
    overlay: str | None
    cluster: str | None
    history: Mapping[str, Any] | None  # the last change recorded: kind, at, run_id, image, digest
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def agrees(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "agrees": self.agrees, "overlay": self.overlay,
                "cluster": self.cluster, "history": dict(self.history) if self.history else None,
                "problems": list(self.problems)}


def compare(env: str, overlay: str | None, cluster: str | None,
            last: HistoryRecord | None, unreadable: Mapping[str, str]) -> Drift:
    """The disagreements between the overlay, the cluster and the last recorded change.

    The cluster is what runs, so each of the others is compared with it. No recorded change
    is not drift: the history starts with the first run that changes the environment."""
    problems = [f"{env}: cannot read the {what}: {why}" for what, why in unreadable.items()]
    if overlay is not None and cluster is not None and overlay != cluster:
        problems.append(f"{env}: the overlay renders {overlay}, the cluster runs {cluster}")
    recorded = _history(last)
    if recorded and cluster is not None and recorded["image"] != cluster:
        problems.append(f"{env}: the last recorded change ({recorded['kind']} at "
                        f"{recorded['at']}, run {recorded['run_id']}) is to "
                        f"{recorded['image'] or 'an image not recorded'}, the cluster runs "
                        f"{cluster}")
    return Drift(env, overlay, cluster, recorded, tuple(problems))


def _history(last: HistoryRecord | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {"kind": last.kind, "at": last.at, "run_id": last.run_id,
            "image": last.data.get("image"), "digest": last.data.get("digest")}


def last_change(store: StateStore, env: str) -> HistoryRecord | None:
    """The newest recorded change of the image ``env`` runs."""
    return next((h for h in store.history(env=env, limit=50) if h.kind in CHANGE_KINDS), None)


def overlay_image(overlay: str, deployment: str, container: str) -> str:
    """The image the overlay renders for the container (``kubectl kustomize``, which is what
    the deploy applies)."""
    done = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True,
                          timeout=RENDER_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LookupError(f"kubectl kustomize {overlay} failed: "
                          f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    for doc in yaml.safe_load_all(done.stdout):
        if isinstance(doc, dict) and doc.get("kind") == "Deployment" and \
                doc.get("metadata", {}).get("name") == deployment:
            return _container_image(doc["spec"]["template"]["spec"]["containers"], container)
    raise LookupError(f"{overlay} renders no deployment {deployment}")


def _container_image(containers: Iterable[Any], name: str) -> str:
    for c in containers:
        if (c.get("name") if isinstance(c, Mapping) else c.name) == name:
            return str(c.get("image") if isinstance(c, Mapping) else c.image)
    raise LookupError(f"no container {name}")


ClusterReader = Callable[[Mapping[str, Any]], str]


def cluster_reader(kubeconfig: str) -> ClusterReader:
    """Reads the image an environment's deployment runs through the Kubernetes API, one
    client per context. The deployment is read as plain JSON through the client's
    ``ApiClient`` (kubeconfig, authentication, TLS): its generated AppsV1Api and models take
    longer to import than the call takes."""
    clients: dict[str, Any] = {}

    def read(env: Mapping[str, Any]) -> str:
        from kubernetes import config

        context = str(env.get("context") or "")
        if context not in clients:
            new_client: Any = config.new_client_from_config  # the client is untyped
            clients[context] = new_client(config_file=kubeconfig or None,
                                          context=context or None)
        dep = read_deployment(clients[context], str(env["namespace"]), str(env["deployment"]))
        return _container_image(dep["spec"]["template"]["spec"]["containers"],
                                str(env["container"]))

    return read


def read_deployment(api: Any, namespace: str, name: str) -> Any:
    """GET the deployment; ``LookupError`` says why it cannot be read."""
    path = (f"/apis/apps/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
            f"/deployments/{urllib.parse.quote(name, safe='')}")
    request = api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                  auth_settings=["BearerToken"])
    resp = api.call_api(*request, _request_timeout=RENDER_TIMEOUT)
    data = resp.read()
    if not 200 <= resp.status <= 299:
        raise LookupError(f"deployment {name} in {namespace}: {resp.status} {resp.reason}")
    return json.loads(data)


def check(environments: Mapping[str, Mapping[str, Any]], envs: Iterable[str],
          store: StateStore, read_cluster: ClusterReader) -> list[Drift]:
    """The drift of each of ``envs``, in the order given."""
    out = []
    for name in envs:
        env = environments[name]
        unreadable: dict[str, str] = {}
        overlay = cluster = None
        try:
            overlay = overlay_image(str(Path(str(env["overlay"]))), str(env["deployment"]),
                                    str(env["container"]))
        except (LookupError, OSError, subprocess.TimeoutExpired, yaml.YAMLError,
                KeyError, TypeError) as exc:
            unreadable["overlay"] = str(exc)
        try:
            cluster = read_cluster(env)
        except LookupError as exc:
            unreadable["cluster"] = str(exc)
        except Exception as exc:  # an unreachable API or a bad kubeconfig: drift to report
            unreadable["cluster"] = f"{type(exc).__name__}: {exc}"
        out.append(compare(name, overlay, cluster, last_change(store, name), unreadable))
    return out
