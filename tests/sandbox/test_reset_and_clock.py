"""A sandbox put back as new in place (what lets tests share one), and its clock, which a
verification window waits on instead of the wall clock."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import boto3
import psycopg
import yaml

from engine import sandbox as sb
from engine.language.loader import PROJECT_ROOT
from engine.sandbox import database
from tests.conftest import _start_sandbox, runbook_process
from tests.helpers import book
from tests.runbooks.killing import wait_until
from tests.world import all_replicasets, deployment, kubectl, snapshot


def app_repository(info) -> str:  # type: ignore[no-untyped-def]
    return str(Path(info["inventory"]).parent / "app")


def git_branches(info) -> list[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(["git", "-C", app_repository(info), "branch", "--format",
                           "%(refname:short)"], check=True, capture_output=True,
                          text=True).stdout.split()


def databases(info) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    tables = {}
    for env, db in info["databases"].items():
        with psycopg.connect(database.url(db["host"], db["port"], db["name"], db["user"],
                                          db["password"])) as conn:
            tables[env] = sorted(r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public'"))
    return tables


def everything(info) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """All a test can change, as a user would look at it."""
    rds = boto3.client("rds")
    return {**snapshot(info), "replicasets": all_replicasets(),
            "rds": sorted(i["DBInstanceIdentifier"]
                          for i in rds.describe_db_instances()["DBInstances"]),
            "databases": databases(info), "branches": git_branches(info)}


def change_everything(info) -> None:  # type: ignore[no-untyped-def]
    kubectl("set", "image", "deployment/qa-quikapp-api", "-n", "quikapp-qa",
            f"api={deployment('dev')['image']}")
    ecr = boto3.client("ecr")
    body = ecr.batch_get_image(repositoryName="quikapp/api",
                               imageIds=[{"imageTag": "1.5.1"}])["images"][0]["imageManifest"]
    ecr.put_image(repositoryName="quikapp/api", imageManifest=body, imageTag="qa-1.5.1")
    boto3.client("rds").create_db_instance(
        DBInstanceIdentifier="quikapp-extra", Engine="postgres", DBInstanceClass="db.t3.micro",
        AllocatedStorage=20, MasterUsername="x", MasterUserPassword="not-a-secret")
    overlay = f"{info['overlays']}/overlays/qa/kustomization.yaml"
    with open(overlay, "a") as f:
        f.write("# changed by hand\n")
    git = ["-C", info["overlays"], "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", *git, "commit", "-qam", "By hand"], check=True)
    subprocess.run(["git", "-C", app_repository(info), "branch", "hotfix/9.9.9"], check=True)
    db = info["databases"]["qa"]
    with psycopg.connect(database.url(db["host"], db["port"], db["name"], db["user"],
                                      db["password"])) as conn:
        conn.execute("CREATE TABLE by_hand (id int)")


def test_a_reset_sandbox_holds_what_a_new_one_holds(sandbox, tmp_path, monkeypatch):
    before = everything(sandbox)
    change_everything(sandbox)
    changed = everything(sandbox)
    assert {k for k in before if changed[k] != before[k]} == \
        {"ecr", "deployments", "commits", "replicasets", "rds", "databases", "branches"}
    sb.reset(sandbox)
    assert everything(sandbox) == before
    # ... which is what a sandbox just started holds.
    new = _start_sandbox(tmp_path / "new")
    try:
        for key, value in sb.environment(new).items():
            monkeypatch.setenv(key, value)
        fresh = everything(new)
    finally:
        sb.down(tmp_path / "new")
    assert fresh == before


def window_book(info, seconds: float, *, interval: float = 5,  # type: ignore[no-untyped-def]
                kubeconfig: str = "") -> str:
    playbook = PROJECT_ROOT / "runbooks" / "playbooks" / "verify-window.yml"
    health = f"{info['kube_url']}/sandbox/health/quikapp-staging/staging-quikapp-api"
    extravars = {"kubeconfig": kubeconfig or info["kubeconfig"], "context": "sandbox",
                 "namespace": "quikapp-staging", "deployment": "staging-quikapp-api",
                 "seconds": seconds, "interval": interval,
                 "checks": [{"name": "health", "url": health, "status": 200}]}
    return book(f"  - id: verify\n    ansible:\n      playbook: {playbook}\n"
                f"      extravars: {json.dumps(extravars)}\n")


def test_a_verification_window_takes_the_sandbox_s_time_not_the_wall_clock_s(
        in_shared_sandbox, write_runbook, runbook_cli):
    path = write_runbook(window_book(in_shared_sandbox, 300))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert ("healthy for 300.0 s on the sandbox's clock (61 samples, no restarts, "
            "1 checks passing)") in result.out


def test_a_held_clock_keeps_the_window_waiting_until_it_is_let_go(in_shared_sandbox,
                                                                  write_runbook):
    path = write_runbook(window_book(in_shared_sandbox, 60))
    sb.hold_clock(in_shared_sandbox)
    try:
        proc = runbook_process("run", str(path))
        wait_until(lambda: sb.clock_state(in_shared_sandbox)["waiting"] == 1, proc)
        held_at = sb.clock_state(in_shared_sandbox)["now"]
        assert proc.poll() is None
    finally:
        sb.release_clock(in_shared_sandbox)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "healthy for 60.0 s on the sandbox's clock (13 samples" in out
    assert sb.clock_state(in_shared_sandbox)["now"] == held_at + 60


def test_without_a_clock_in_the_kubeconfig_the_window_takes_the_wall_clock_s_time(
        in_shared_sandbox, write_runbook, runbook_cli, isolated):
    config = yaml.safe_load(Path(in_shared_sandbox["kubeconfig"]).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"].pop("extensions")
    plain = isolated / "kubeconfig"
    plain.write_text(yaml.safe_dump(config))
    before = sb.clock_state(in_shared_sandbox)["now"]
    path = write_runbook(window_book(in_shared_sandbox, 1, interval=0.5, kubeconfig=str(plain)))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert re.search(r"healthy for \d+\.\d s \(\d+ samples, no restarts", result.out), result.out
    assert sb.clock_state(in_shared_sandbox)["now"] == before


def test_a_clock_named_anywhere_but_this_machine_is_ignored(
        in_shared_sandbox, write_runbook, runbook_cli, isolated):
    # Only the local sandbox may shorten a window: a kubeconfig naming a clock elsewhere
    # gets the wall clock (were the clock asked, the unresolvable host would fail the step).
    config = yaml.safe_load(Path(in_shared_sandbox["kubeconfig"]).read_text())
    for cluster in config["clusters"]:
        for ext in cluster["cluster"]["extensions"]:
            ext["extension"]["url"] = "http://clock.sandbox.invalid:9/clock"
    elsewhere = isolated / "kubeconfig"
    elsewhere.write_text(yaml.safe_dump(config))
    path = write_runbook(window_book(in_shared_sandbox, 1, interval=0.5,
                                     kubeconfig=str(elsewhere)))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert re.search(r"healthy for \d+\.\d s \(\d+ samples, no restarts", result.out), result.out
    assert "sandbox's clock" not in result.out
