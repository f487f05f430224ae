"""What the sandbox starts with: seven environments running realistic images, the ECR
repository holding them, an RDS instance with a nightly snapshot per environment, and a git
copy of the kustomize overlays."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from engine.sandbox.kube import Cluster

REGION = "us-east-1"
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPOSITORY = "quikapp/api"
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# environment -> (previous release, running release)
RELEASES = {"dev": ("1.5.0", "1.5.1"), "qa": ("1.4.2", "1.5.0"), "uat1": ("1.4.1", "1.4.2"),
            "uat2": ("1.4.1", "1.4.2"), "uat3": ("1.4.0", "1.4.1"),
            "staging": ("1.4.0", "1.4.1"), "live": ("1.3.9", "1.4.0")}
VERSIONS = ["1.3.9", "1.4.0", "1.4.1", "1.4.2", "1.4.3", "1.5.0", "1.5.1"]
# The release beside the API: its web front end and its queue worker, each with its own ECR
# repository, run in every environment. uat1 runs other api and web images than staging and
# the same worker: promoting uat1 to staging changes two services of three.
SERVICES = {
    "api": (REPOSITORY, RELEASES, VERSIONS),
    "web": ("quikapp/web",
            {"dev": ("2.4.0", "2.4.1"), "qa": ("2.3.1", "2.4.0"), "uat1": ("2.3.0", "2.3.1"),
             "uat2": ("2.3.0", "2.3.1"), "uat3": ("2.2.9", "2.3.0"),
             "staging": ("2.2.9", "2.3.0"), "live": ("2.2.8", "2.2.9")},
            ["2.2.8", "2.2.9", "2.3.0", "2.3.1", "2.3.2", "2.4.0", "2.4.1"]),
    "worker": ("quikapp/worker",
               {"dev": ("3.1.0", "3.2.0"), "qa": ("3.0.0", "3.1.0"),
                **{env: ("2.9.0", "3.0.0") for env in ("uat1", "uat2", "uat3", "staging",
                                                        "live")}},
               ["2.9.0", "3.0.0", "3.1.0", "3.2.0"]),
}
# In the sandbox an image whose tag contains "crashloop" never becomes ready: a bad release.
# One whose tag contains "errors" becomes ready and answers its health URL, but serves 5xx
# to three requests in ten (engine/sandbox/metrics.py): only monitoring sees it.
BROKEN = ["1.4.4-crashloop", "1.4.5-errors"]


def manifest(version: str, service: str = "api") -> dict[str, Any]:
    """An image manifest like a Node.js service's: shared base layers, a per-release app layer
    (the api's keep the names they had before the release had other services)."""
    def layer(name: str, size: int) -> dict[str, Any]:
        return {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size,
                "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest()}
    own = "" if service == "api" else f"{service}-"
    app_size = 11_500_000 + VERSIONS.index(version) * 730_000 if version in VERSIONS \
        else 12_000_000
    return {"schemaVersion": 2, "mediaType": MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": 7_431, "digest": "sha256:" + hashlib.sha256(
                           f"config-{own}{version}".encode()).hexdigest()},
            "layers": [layer("debian-bookworm-slim", 29_126_484),
                       layer("node-20-runtime", 48_921_307),
                       layer(f"npm-dependencies-{own}1", 61_384_019),
                       layer(f"app-{own}{version}", app_size)]}


# moto takes any credentials; these are the sandbox's own, masked like real ones.
ACCESS_KEY = "AKIASANDBOX0000000000"
SECRET_KEY = "sandbox-only-secret-access-key"


@functools.cache
def _client(service: str, aws_url: str) -> Any:
    # Made once: a reset seeds again, and making a client costs more than its requests.
    import boto3

    return boto3.client(service, endpoint_url=aws_url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def seed_aws(aws_url: str) -> None:
    ecr = _client("ecr", aws_url)
    for service, (repository, releases, versions) in SERVICES.items():
        ecr.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
        for version in versions + (BROKEN if service == "api" else []):
            body = json.dumps(manifest(version, service), indent=3)
            tags = [version] + [f"{env}-{version}" for env, pair in releases.items()
                                if version in pair]
            for tag in tags:
                ecr.put_image(repositoryName=repository, imageManifest=body, imageTag=tag,
                              imageManifestMediaType=MEDIA_TYPE)
    rds = _client("rds", aws_url)
    for env in RELEASES:
        rds.create_db_instance(DBInstanceIdentifier=f"quikapp-{env}", Engine="postgres",
                               DBInstanceClass="db.t3.medium", AllocatedStorage=50,
                               MasterUsername="quikapp", MasterUserPassword="sandbox-only-pw",
                               DBName="quikapp")
        rds.create_db_snapshot(DBInstanceIdentifier=f"quikapp-{env}",
                               DBSnapshotIdentifier=f"quikapp-{env}-nightly")


def seed_overlays(repo_k8s: Path, where: Path) -> Path:
    """A git repository holding a copy of the k8s folder: promotions commit into it."""
    target = where / "k8s"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(repo_k8s, target)
    git = ["git", "-C", str(target), "-c", "user.name=sandbox",
           "-c", "user.email=sandbox@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Sandbox overlays"], check=True)
    return target


def seed_app_repository(project: Path) -> Path:
    """The application's git repository: develop, main and the branch of a hotfix under way
    (hotfix/1.4.3), which the hotfix runbook looks for when given --branch."""
    git = ["git", "-C", str(project), "-c", "user.name=sandbox",
           "-c", "user.email=sandbox@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Sandbox application"], check=True)
    for branch in ("develop", "hotfix/1.4.3"):
        subprocess.run([*git, "branch", branch], check=True)
    return project


def seed_cluster(cluster: Cluster, overlays: Path) -> None:
    for env in RELEASES:
        ns = f"quikapp-{env}"
        cluster.create("", "v1", "namespaces", "", {"metadata": {"name": ns}})
        rendered = subprocess.run(["kubectl", "kustomize", str(overlays / env)], check=True,
                                  capture_output=True, text=True).stdout
        for doc in yaml.safe_load_all(rendered):
            if doc["kind"] != "Deployment":
                continue
            container = doc["spec"]["template"]["spec"]["containers"][0]
            current_image = container["image"]
            repository, releases, _ = SERVICES[container["name"]]
            container["image"] = f"{REGISTRY}/{repository}:{env}-{releases[env][0]}"
            cluster.create("apps", "v1", "deployments", ns, json.loads(json.dumps(doc)))
            container["image"] = current_image
            name = doc["metadata"]["name"]
            cluster.replace("apps", "v1", "deployments", ns, name, doc)
