"""The project's action plugins, run by a real ansible-playbook: what check mode changes
(nothing) and shows (a diff), what a bad argument says, and that no task starts a module
process (the play's Python interpreter does not exist: a module could not run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from kubernetes import client, config

from engine.sandbox.kube import Cluster
from engine.sandbox.kube_http import KubeServer

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "runbooks" / "collections"
PF = "runbook.platform."  # the collection the plugins are in
ANSIBLE = str(Path(sys.executable).parent / "ansible-playbook")
IMAGE = "registry.example/app"


def play(folder: Path, *tasks: dict[str, Any], check: bool = False) -> list[dict[str, Any]]:
    """Each task's result, from a one-play playbook run with ansible-playbook."""
    return [task["hosts"]["localhost"] for task in report(folder, *tasks, check=check)
            ["plays"][0]["tasks"]]


def report(folder: Path, *tasks: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """ansible.posix.json's report of a one-play playbook: each task's result, and what the
    play passed on (``global_custom_stats``)."""
    book = folder / "play.yml"
    book.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False,
                                     "tasks": list(tasks)}]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_SHOW_CUSTOM_STATS": "true",
           "ANSIBLE_HOME": str(folder / ".ansible"),
           "ANSIBLE_LOCAL_TEMP": str(folder / ".ansible" / "tmp")}
    done = subprocess.run(
        [ANSIBLE, "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=/nonexistent/python",
         *(["--check", "--diff"] if check else []), str(book)],
        capture_output=True, text=True, env=env, cwd=folder, check=False)
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(done.stdout + done.stderr) from None
    return answer


# -- Kubernetes: the emulator, in this process ----------------------------------------------

class Kube:
    def __init__(self, folder: Path, *, serve_watches: bool = True) -> None:
        self.cluster = Cluster(rollout_delay=3600)  # a rollout completes when a test says so
        self.server = KubeServer(("127.0.0.1", 0), self.cluster, serve_watches=serve_watches)
        self.server.start()
        self.kubeconfig = folder / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": self.server.url}}],
            "users": [{"name": "t", "user": {"token": "t"}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
        api = config.new_client_from_config(str(self.kubeconfig))
        self.apps, self.core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.core.create_namespace({"metadata": {"name": "app"}})
        self.apps.create_namespaced_deployment("app", {
            "metadata": {"name": "api"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"containers": [{"name": "api",
                                                           "image": f"{IMAGE}:1"}]}}}})
        self.complete()

    def args(self, **more: Any) -> dict[str, Any]:
        return {"kubeconfig": str(self.kubeconfig), "namespace": "app", **more}

    def set_image(self, tag: str) -> None:
        self.apps.patch_namespaced_deployment("api", "app", {"spec": {"template": {"spec": {
            "containers": [{"name": "api", "image": f"{IMAGE}:{tag}"}]}}}})

    def complete(self) -> None:
        """What the deployment controller reports once the rollout is done."""
        dep = self.apps.read_namespaced_deployment("api", "app")
        want = dep.spec.replicas
        self.apps.patch_namespaced_deployment_status("api", "app", {"status": {
            "observedGeneration": dep.metadata.generation, "replicas": want,
            "updatedReplicas": want, "readyReplicas": want, "availableReplicas": want,
            "unavailableReplicas": None}})

    def image(self) -> str:
        return str(self.apps.read_namespaced_deployment("api", "app")
                   .spec.template.spec.containers[0].image)

    def wait_for_watches(self, count: int) -> None:
        with self.server.watched:
            assert self.server.watched.wait_for(
                lambda: self.server.watch_requests >= count, timeout=120)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Kube]:
    k = Kube(tmp_path)
    yield k
    k.server.shutdown()


def test_rollout_history_in_check_mode_reads_it(kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")
    [history] = play(tmp_path, {PF + "k8s_rollout": kube.args(action="history", deployment="api")},
                     check=True)
    assert not history["changed"]
    assert [r["image"] for r in history["revisions"]] == [f"{IMAGE}:2", f"{IMAGE}:1"]
    assert history["target"]["image"] == f"{IMAGE}:1"


def test_rollout_undo_in_check_mode_changes_nothing_and_shows_the_diff(
        kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")
    old = next(rs for rs in kube.apps.list_namespaced_replica_set("app").items
               if rs.spec.template.spec.containers[0].image == f"{IMAGE}:1")
    [undo] = play(tmp_path, {PF + "k8s_rollout": kube.args(
        action="undo", deployment="api", to_hash=old.metadata.labels["pod-template-hash"])},
        check=True)
    assert undo["changed"] and undo["to_image"] == f"{IMAGE}:1"
    assert f"{IMAGE}:2" in undo["diff"]["before"] and f"{IMAGE}:1" in undo["diff"]["after"]
    assert kube.image() == f"{IMAGE}:2"


def test_rollout_undo_does_it_without_check_mode(kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")
    old = next(rs for rs in kube.apps.list_namespaced_replica_set("app").items
               if rs.spec.template.spec.containers[0].image == f"{IMAGE}:1")
    [undo] = play(tmp_path, {PF + "k8s_rollout": kube.args(
        action="undo", deployment="api", to_hash=old.metadata.labels["pod-template-hash"])})
    assert undo["changed"]
    assert kube.image() == f"{IMAGE}:1"


def test_verify_window_in_check_mode_takes_one_sample(kube: Kube, tmp_path: Path) -> None:
    [window] = play(tmp_path, {PF + "verify_window": kube.args(deployment="api", seconds=3600,
                                                          image=f"{IMAGE}:1")}, check=True)
    assert not window["changed"] and window["samples"] == 1, window
    assert window["summary"].startswith("healthy for")


def test_verify_window_fails_on_another_image(kube: Kube, tmp_path: Path) -> None:
    [window] = play(tmp_path, {PF + "verify_window": kube.args(deployment="api", seconds=1,
                                                          image=f"{IMAGE}:9")}, check=True)
    assert window["failed"]
    assert f"runs {IMAGE}:1, not {IMAGE}:9" in window["msg"]


def test_reading_a_deployment_in_check_mode(kube: Kube, tmp_path: Path) -> None:
    found, missing = play(tmp_path, {PF + "k8s_deployment": kube.args(name="api")},
                          {PF + "k8s_deployment": kube.args(name="nothing")}, check=True)
    assert not found["changed"] and found["complete"]
    assert found["resources"][0]["spec"]["template"]["spec"]["containers"][0]["image"] \
        == f"{IMAGE}:1"
    assert missing["resources"] == [] and not missing.get("failed")


def _wait_in_background(kube: Kube, folder: Path) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.extend(play(folder, {
        PF + "k8s_deployment": kube.args(name="api", wait=True, wait_timeout=600)})))
    thread.start()
    return thread, results


def test_the_rollout_wait_watches_until_the_rollout_completes(
        kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")
    thread, results = _wait_in_background(kube, tmp_path)
    kube.wait_for_watches(1)  # the wait is watching the unfinished rollout
    kube.complete()
    thread.join()
    [waited] = results
    assert waited["complete"] and waited["wait_method"] == "watch", waited
    assert waited["resources"][0]["status"]["updatedReplicas"] == 2


def test_the_rollout_wait_polls_a_server_that_cannot_watch(tmp_path: Path) -> None:
    kube = Kube(tmp_path, serve_watches=False)
    try:
        kube.set_image("2")
        thread, results = _wait_in_background(kube, tmp_path)
        kube.wait_for_watches(1)  # refused: from now on it polls
        kube.complete()
        thread.join()
    finally:
        kube.server.shutdown()
    [waited] = results
    assert waited["complete"] and waited["wait_method"] == "poll", waited


def test_a_read_with_a_container_says_what_it_runs_and_passes_it_on(
        kube: Kube, tmp_path: Path) -> None:
    """``pass_on`` gives the step the same outputs a set_stats task after it would."""
    args = kube.args(name="api", container="api")
    done = report(tmp_path, {PF + "k8s_deployment": {**args, "pass_on": ["image", "tag"]}},
                  check=True)
    [found] = [t["hosts"]["localhost"] for t in done["plays"][0]["tasks"]]
    assert (found["image"], found["repository"], found["tag"], found["revision"]) \
        == (f"{IMAGE}:1", IMAGE, "1", "1"), found
    (tmp_path / "set").mkdir()
    with_task = report(tmp_path / "set", {PF + "k8s_deployment": args, "register": "found"},
                       {"ansible.builtin.set_stats": {"per_host": False, "data": {
                           "image": "{{ found.image }}", "tag": "{{ found.tag }}"}}})
    assert done["global_custom_stats"] == with_task["global_custom_stats"] \
        == {"image": f"{IMAGE}:1", "tag": "1"}


def test_pass_on_names_only_results_the_plugin_has(kube: Kube, tmp_path: Path) -> None:
    done = report(tmp_path, {PF + "k8s_deployment": kube.args(name="api", pass_on=["digest"])})
    [result] = [t["hosts"]["localhost"] for t in done["plays"][0]["tasks"]]
    assert result["failed"]
    assert result["msg"].startswith("pass_on: k8s_deployment has no result named digest "
                                    "(its results: "), result["msg"]
    assert not done["global_custom_stats"]


def test_a_read_with_a_container_fails_without_the_deployment_or_the_container(
        kube: Kube, tmp_path: Path) -> None:
    missing, other, wrong = play(
        tmp_path, {PF + "k8s_deployment": kube.args(name="nothing", container="api"),
                   "ignore_errors": True},
        {PF + "k8s_deployment": kube.args(name="api", container="sidecar"), "ignore_errors": True},
        {PF + "k8s_deployment": kube.args(name="api", container="api", image=f"{IMAGE}:9"),
         "ignore_errors": True})
    assert missing["failed"] and missing["msg"] == "deployment nothing not found in namespace app"
    assert other["failed"] and other["msg"] == "deployment api has no container sidecar " \
        "(containers: api)"
    assert wrong["failed"] and wrong["msg"] == f"api runs {IMAGE}:1, expected {IMAGE}:9"


@pytest.mark.parametrize(("running", "repository", "tag"), [
    (f"{IMAGE}:2", IMAGE, "2"),
    (IMAGE, IMAGE, ""),  # no tag: the whole name, not an empty repository
    ("registry.example:5000/app", "registry.example:5000/app", ""),  # a port, not a tag
    ("registry.example:5000/app:7", "registry.example:5000/app", "7"),
    (f"{IMAGE}@sha256:{'a' * 64}", IMAGE, ""),
    (f"{IMAGE}:8@sha256:{'a' * 64}", IMAGE, "8")])
def test_a_read_with_a_container_splits_the_image_it_runs(
        kube: Kube, tmp_path: Path, running: str, repository: str, tag: str) -> None:
    kube.apps.patch_namespaced_deployment("api", "app", {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": running}]}}}})
    [found] = play(tmp_path, {PF + "k8s_deployment": kube.args(name="api", container="api")})
    assert (found["image"], found["repository"], found["tag"]) == (running, repository, tag)


def test_an_empty_container_name_is_a_container_the_deployment_lacks(
        kube: Kube, tmp_path: Path) -> None:
    """An inventory's ``container: ""`` is checked as any other name, not taken for none:
    the image is checked, and a missing deployment fails."""
    wrong, missing = play(
        tmp_path, {PF + "k8s_deployment": kube.args(name="api", container="", image=f"{IMAGE}:9"),
                   "ignore_errors": True},
        {PF + "k8s_deployment": kube.args(name="nothing", container=""), "ignore_errors": True})
    assert wrong["failed"] and wrong["msg"] == "deployment api has no container  " \
        "(containers: api)", wrong
    assert missing["failed"] and missing["msg"] == "deployment nothing not found in " \
        "namespace app", missing


def test_the_rollout_wait_checks_the_image_it_ends_with(kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.extend(play(tmp_path, {
        PF + "k8s_deployment": kube.args(name="api", wait=True, wait_timeout=600,
                                                     container="api", image=f"{IMAGE}:3")})))
    thread.start()
    kube.wait_for_watches(1)
    kube.complete()
    thread.join()
    [waited] = results
    assert waited["failed"] and waited["complete"], waited
    assert waited["msg"] == f"api runs {IMAGE}:2, expected {IMAGE}:3"


def test_a_rollout_that_does_not_complete_in_time_says_how_far_it_got(
        kube: Kube, tmp_path: Path) -> None:
    kube.set_image("2")  # the emulator's rollout never completes in this test
    [waited] = play(tmp_path, {PF + "k8s_deployment": kube.args(
        name="api", wait=True, wait_timeout=1, container="api", image=f"{IMAGE}:2")})
    assert waited["failed"] and not waited["complete"]
    assert waited["msg"] == "the rollout of api did not complete within 1 s: " \
        "0/2 replicas available, 0 updated", waited["msg"]


# -- the overlay -----------------------------------------------------------------------------

KUSTOMIZATION = "resources:\n- ../base\nimages:\n- name: app\n  newName: reg/app\n  newTag: '1'\n"


def test_kustomize_image_in_check_mode_changes_nothing_and_shows_the_diff(
        tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    [edit] = play(tmp_path, {PF + "kustomize_image": {"path": str(tmp_path), "name": "app",
                                                 "image": "reg/app:2"}}, check=True)
    assert edit["changed"] and edit["image"] == "reg/app:2" and edit["previous"] == "reg/app:1"
    assert "newTag: '1'" in edit["diff"]["before"] and "newTag: '2'" in edit["diff"]["after"]
    assert (tmp_path / "kustomization.yaml").read_text() == KUSTOMIZATION


def test_kustomize_image_writes_the_overlay(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    first, again = play(tmp_path, *[{PF + "kustomize_image": {
        "path": str(tmp_path), "name": "app", "new_name": "reg/app", "new_tag": "2"}}] * 2)
    assert first["changed"] and not again["changed"]
    images = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())["images"]
    assert images == [{"name": "app", "newName": "reg/app", "newTag": "2"}]


def _overlay(folder: Path, tag: str) -> Path:
    """An overlay of the test cluster's deployment with ``tag`` as its image, and a service."""
    base = folder / "base"
    base.mkdir(exist_ok=True)
    (base / "kustomization.yaml").write_text("resources:\n- app.yaml\n")
    (base / "app.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                  "template": {"metadata": {"labels": {"app": "api"}},
                               "spec": {"containers": [{"name": "api", "image": "app"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
         "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}]))
    overlay = folder / "overlay"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n- ../base\nimages:\n- name: app\n  newName: {IMAGE}\n"
        f"  newTag: '{tag}'\n")
    return overlay


def test_kustomize_apply_creates_patches_and_leaves_alone(kube: Kube, tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, "2")
    task = {PF + "kustomize_apply": kube.args(path=str(overlay))}
    [first] = play(tmp_path, task)
    assert first["changed"]
    assert [(o["kind"], o["action"]) for o in first["objects"]] == [
        ("Service", "created"), ("Deployment", "patched")]
    assert kube.image() == f"{IMAGE}:2"
    assert kube.core.read_namespaced_service("api", "app").spec.ports[0].port == 80
    [again] = play(tmp_path, task)
    assert not again["changed"]
    assert {o["action"] for o in again["objects"]} == {"unchanged"}
    # Another image in the overlay: only the deployment changes.
    _overlay(tmp_path, "3")
    [third] = play(tmp_path, task)
    assert third["changed"] and [o["action"] for o in third["objects"]] == [
        "unchanged", "patched"]
    assert kube.image() == f"{IMAGE}:3"


def test_kustomize_apply_in_check_mode_changes_nothing(kube: Kube, tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, "2")
    [checked] = play(tmp_path, {PF + "kustomize_apply": kube.args(path=str(overlay))}, check=True)
    assert checked["changed"]
    assert [o["action"] for o in checked["objects"]] == ["created", "patched"]
    assert kube.image() == f"{IMAGE}:1"
    assert kube.core.list_namespaced_service("app").items == []


def test_kustomize_apply_says_why_the_overlay_does_not_render(kube: Kube,
                                                              tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    [failed] = play(tmp_path, {PF + "kustomize_apply": kube.args(path=str(tmp_path))})
    assert failed["failed"]
    assert failed["msg"].startswith(f"kubectl kustomize {tmp_path} failed: ")
    assert "missing.yaml" in failed["msg"]
    assert kube.image() == f"{IMAGE}:1"


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout


def test_overlay_commit_in_check_mode_commits_nothing_and_shows_what(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(KUSTOMIZATION)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=a", "-c", "user.email=a@localhost", "commit", "-qm", "a")
    (overlay / "kustomization.yaml").write_text(KUSTOMIZATION + "namespace: app\n")
    task = {PF + "overlay_commit": {"path": str(overlay), "message": "Promote app"}}
    [checked] = play(tmp_path, task, check=True)
    assert checked["changed"] and not checked["committed"]
    assert "kustomization.yaml" in checked["diff"]["prepared"]
    assert _git(tmp_path, "status", "--porcelain") != ""  # still uncommitted
    [done] = play(tmp_path, task)
    assert done["changed"] and done["committed"]
    assert _git(tmp_path, "log", "-1", "--format=%s %an") == "Promote app runbook\n"
    [again] = play(tmp_path, task)
    assert not again["changed"] and again["in_git"] and again["files"] == []


def test_overlay_commit_outside_git_does_nothing(tmp_path: Path) -> None:
    [result] = play(tmp_path, {PF + "overlay_commit": {"path": str(tmp_path), "message": "m"}})
    assert not result["changed"] and not result["in_git"]


# -- ECR and RDS: moto's server in the sandbox -----------------------------------------------

def test_ecr_retag_in_check_mode_copies_nothing_and_shows_the_diff(
        sandbox: dict[str, str], tmp_path: Path) -> None:
    [copied] = play(tmp_path, {PF + "ecr_retag": {"repository": "quikapp/api",
                                             "source_tag": "1.4.2", "target_tag": "fresh-1"}},
                    check=True)
    assert copied["changed"] and not copied["copied"]
    assert copied["digest"] in copied["diff"]["after"]
    assert "no such tag" in copied["diff"]["before"]
    ecr = boto3.client("ecr")
    tags = {t for image in ecr.describe_images(repositoryName="quikapp/api")["imageDetails"]
            for t in image.get("imageTags", [])}
    assert "fresh-1" not in tags and "1.4.2" in tags


def test_ecr_image_and_snapshot_choice_in_check_mode(
        in_shared_sandbox: dict[str, str], tmp_path: Path) -> None:
    image, missing, snapshot = play(
        tmp_path, {PF + "ecr_image": {"repository": "quikapp/api", "tag": "1.4.2"}},
        {PF + "ecr_image": {"repository": "quikapp/api", "tag": "9.9.9", "missing_ok": True}},
        {PF + "rds_snapshot_choose": {"instance": "quikapp-live", "latest": True}}, check=True)
    assert image["found"] and image["digest"].startswith("sha256:") and not image["changed"]
    assert not missing["found"] and not missing.get("failed")
    assert snapshot["snapshot"]["id"] == "quikapp-live-nightly" and snapshot["problem"] is None


BAD_ARGUMENTS = [
    ({PF + "ecr_image": {"repository": "r"}}, "missing required arguments: tag"),
    ({PF + "ecr_retag": {"repository": "r", "source_tag": "a", "target_tag": "b", "tags": "c"}},
     "Unsupported parameters for (ecr_retag) module: tags"),
    ({PF + "k8s_rollout": {"action": "undo", "namespace": "n", "deployment": "d"}},
     "action is undo but all of the following are missing: to_hash"),
    ({PF + "k8s_rollout": {"action": "redo", "namespace": "n", "deployment": "d"}},
     "value of action must be one of: history, undo, got: redo"),
    ({PF + "kustomize_image": {"path": ".", "name": "app", "image": "a:1", "new_tag": "2"}},
     "parameters are mutually exclusive: image|new_tag"),
    ({PF + "rds_snapshot_choose": {"instance": "i", "latest": "maybe"}},
     "argument 'latest' is of type"),
    ({PF + "verify_window": {"namespace": "n", "deployment": "d", "seconds": "soon"}},
     "argument 'seconds' is of type"),
    ({PF + "k8s_deployment": {"namespace": "n", "name": "d", "wait_timeout": "long"}},
     "argument 'wait_timeout' is of type"),
    ({PF + "k8s_deployment": {"namespace": "n", "name": "d", "image": "a:1"}},
     "missing parameter(s) required by 'image': container"),
    ({PF + "ecr_image": {"repository": "r", "tag": "t", "pass_on": {"digest": "d"}}},
     "argument 'pass_on' is of type"),
    ({PF + "overlay_commit": {"path": "."}}, "missing required arguments: message"),
    ({PF + "kustomize_apply": {"namespace": "n"}}, "missing required arguments: path"),
]


@pytest.mark.parametrize(("task", "message"), BAD_ARGUMENTS,
                         ids=[next(iter(t)) for t, _ in BAD_ARGUMENTS])
def test_a_bad_argument_fails_the_task_and_says_which(task: dict[str, Any], message: str,
                                                      tmp_path: Path) -> None:
    [result] = play(tmp_path, task)
    assert result["failed"]
    assert message in result["msg"]


# -- the shipped playbooks -------------------------------------------------------------------

SHIPPED = sorted((REPO / "runbooks" / "playbooks").glob("*.yml"))


@pytest.mark.parametrize("playbook", SHIPPED, ids=[p.name for p in SHIPPED])
def test_no_shipped_play_gathers_facts(playbook: Path) -> None:
    """None needs facts: gathering them would start a module process in every play."""
    plays = yaml.safe_load(playbook.read_text())
    assert plays and all(play.get("gather_facts") is False for play in plays)
