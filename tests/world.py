"""Read the state of the cluster, ECR and the overlays the way a user would check them."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import yaml

ENVS = ["dev", "qa", "uat1", "uat2", "uat3", "staging", "live"]
REVISION = "deployment.kubernetes.io/revision"


def ecr_tags() -> dict[str, str]:
    ecr = boto3.client("ecr")
    out: dict[str, str] = {}
    for page in ecr.get_paginator("describe_images").paginate(repositoryName="quikapp/api"):
        for image in page["imageDetails"]:
            for tag in image.get("imageTags", []):
                out[tag] = image["imageDigest"]
    return out


KUBECTL_HOME = tempfile.mkdtemp(prefix="kubectl-home-")


def kubectl_json(*args: str) -> Any:
    # kubectl insists on a usable $HOME (tests make the real one unwritable).
    env = {**os.environ, "HOME": KUBECTL_HOME}
    out = subprocess.run(["kubectl", *args, "-o", "yaml"], check=True, capture_output=True,
                         text=True, env=env).stdout
    return yaml.safe_load(out)


def _seen(dep: dict[str, Any]) -> dict[str, Any]:
    return {"image": dep["spec"]["template"]["spec"]["containers"][0]["image"],
            "generation": dep["metadata"]["generation"],
            "revision": dep["metadata"]["annotations"][REVISION],
            "available": dep["status"].get("availableReplicas")}


def deployment(env: str) -> dict[str, Any]:
    return _seen(kubectl_json("get", "deployment", f"{env}-quikapp-api",
                              "-n", f"quikapp-{env}"))


def deployments() -> dict[str, dict[str, Any]]:
    """Each environment's deployment as `deployment` reads it, in one `kubectl get`."""
    found = {(dep["metadata"]["namespace"], dep["metadata"]["name"]): dep
             for dep in kubectl_json("get", "deployments", "--all-namespaces")["items"]}
    return {env: _seen(found[f"quikapp-{env}", f"{env}-quikapp-api"]) for env in ENVS}


def _revisions(items: list[dict[str, Any]], env: str) -> dict[str, str]:
    """revision -> image of each ReplicaSet of the api's deployment (the environment's
    other services have their own)."""
    return {rs["metadata"]["annotations"][REVISION]:
            rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in items
            if any(owner.get("name") == f"{env}-quikapp-api"
                   for owner in rs["metadata"].get("ownerReferences") or [])}


def replicasets(env: str) -> dict[str, str]:
    """revision -> image of each ReplicaSet of the environment's deployment."""
    return _revisions(kubectl_json("get", "replicasets", "-n", f"quikapp-{env}")["items"], env)


def all_replicasets() -> dict[str, dict[str, str]]:
    """`replicasets` of each environment, in one `kubectl get`."""
    items = kubectl_json("get", "replicasets", "--all-namespaces")["items"]
    return {env: _revisions([rs for rs in items
                             if rs["metadata"]["namespace"] == f"quikapp-{env}"], env)
            for env in ENVS}


def overlay_commits(sandbox: dict[str, str]) -> list[str]:
    out = subprocess.run(["git", "-C", sandbox["overlays"], "log", "--format=%s"],
                         check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def snapshot(sandbox: dict[str, str]) -> dict[str, Any]:
    return {"ecr": ecr_tags(), "deployments": deployments(),
            "commits": overlay_commits(sandbox)}


def image(tag: str) -> str:
    return f"123456789012.dkr.ecr.us-east-1.amazonaws.com/quikapp/api:{tag}"


def kubectl(*args: str) -> str:
    env = {**os.environ, "HOME": KUBECTL_HOME}
    return subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def rendered_image(sandbox: dict[str, str], env: str) -> str:
    """The image `kubectl kustomize` renders from the environment's overlay in the sandbox's
    git copy: what the next `kubectl apply -k` would run."""
    docs = yaml.safe_load_all(kubectl("kustomize", f"{sandbox['overlays']}/overlays/{env}"))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def overlay_is_committed(sandbox: dict[str, str]) -> bool:
    out = subprocess.run(["git", "-C", sandbox["overlays"], "status", "--porcelain"],
                         check=True, capture_output=True, text=True).stdout
    return out == ""


@contextmanager
def clock_held() -> Iterator[None]:
    """While held, a verification window in the sandbox the environment points at stands
    still in the middle of its work (engine/sandbox/clock.py); outside a sandbox, nothing."""
    from engine import sandbox as sb

    kubeconfig = os.environ.get("KUBECONFIG")
    info = sb.status(Path(kubeconfig).parent) if kubeconfig else None
    if info is None:
        yield
        return
    sb.hold_clock(info)
    try:
        yield
    finally:
        sb.release_clock(info)
