"""What the Ansible adapter hands Ansible, both ways of running it: where collections are
found, and what a kept worker's own environment holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.steps.ansible import policy
from tests.conftest import REPO


def test_the_projects_collections_come_first_and_the_users_stay(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    ours = str(REPO / "runbooks" / "collections")
    assert policy.collections_path({}).split(os.pathsep) == \
        [ours, "/usr/share/ansible/collections"]
    assert policy.collections_path({"ANSIBLE_COLLECTIONS_PATH": f"/mine:{ours}"}) \
        .split(os.pathsep) == [ours, "/mine"]


def test_both_our_collection_and_the_bundled_ones_are_found(tmp_path: Path) -> None:
    env = {**os.environ, **policy.settings(os.environ), **policy.home_env(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), "-t", "module", "--json",
         "runbook.platform.k8s_deployment", "kubernetes.core.k8s_info", "amazon.aws.s3_object"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "runbook.platform.k8s_deployment" in done.stdout and "k8s_info" in done.stdout


def test_a_kept_worker_holds_settings_not_secrets() -> None:
    env = {"PATH": "/bin", "AWS_DATA_PATH": "/models", "AWS_ACCESS_KEY_ID": "AKIA",
           "ANSIBLE_FORKS": "3", "ANSIBLE_VAULT_PASSWORD_FILE": "/vault-pass",
           "ANSIBLE_BECOME_ASK_PASS": "False", "ANSIBLE_NET_PASSWORD": "hunter2",
           "ANSIBLE_GALAXY_API_KEY": "k", "ANSIBLE_HOME": "/home", "KUBECONFIG": "/kube",
           "RUNBOOK_RUN_ID": "r"}
    assert policy.worker_env(env) == {
        "PATH": "/bin", "AWS_DATA_PATH": "/models", "ANSIBLE_FORKS": "3",
        "ANSIBLE_VAULT_PASSWORD_FILE": "/vault-pass", "ANSIBLE_BECOME_ASK_PASS": "False"}


def test_a_playbook_sees_the_allowlist_and_what_its_step_names() -> None:
    outer = {"PATH": "/bin", "AWS_REGION": "eu-west-1", "DB_URL": "x", "MINE": "y"}
    assert policy.playbook_env(outer, outer, ["MINE"], {"EXTRA": "1"}) == {
        "PATH": "/bin", "AWS_REGION": "eu-west-1", "MINE": "y", "EXTRA": "1"}
