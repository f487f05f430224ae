"""The promote runbook end to end in the sandbox."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from engine.language.loader import PROJECT_ROOT
from tests.conftest import runbook_process
from tests.runbooks.killing import step_attempts, step_status, wait_until
from tests.world import ENVS, deployment, ecr_tags, image, overlay_commits, snapshot

INVENTORY = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp.yaml").read_text())
STAGE = {env: spec["stage"] for env, spec in INVENTORY["environments"].items()}
VALID = [(src, dst) for src, targets in INVENTORY["promotions"].items() for dst in targets]
REFUSED = [(a, b) for a in ENVS for b in ENVS if (a, b) not in VALID]


def checklist(dst: str) -> list[str]:
    """The items people attest (not the automated checks, not the gates)."""
    name = INVENTORY["environments"][dst]["checklist"]
    return [item["id"] for item in INVENTORY["checklists"][name]
            if "check" not in item and "approval" not in item]


def gates_of(dst: str) -> list[str]:
    name = INVENTORY["environments"][dst]["checklist"]
    return [item["approval"]["gate"] for item in INVENTORY["checklists"][name]
            if "approval" in item]


def soaked(env: str) -> None:
    """Arrange that ``env`` got its current image 25 hours ago, as the history would say."""
    from datetime import UTC, datetime, timedelta

    from engine.store import HistoryRecord, open_store

    at = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
    store = open_store()
    store.add_history(HistoryRecord(at=at, run_id="earlier-run", user="dave",
                                    kind="promotion", env=env,
                                    data={"image": deployment(env)["image"]}))
    store.close()


def start(runbook_cli, src: str, dst: str, *extra: str) -> str:
    first = runbook_cli("run", "promote", "--from", src, "--to", dst, *extra)
    assert first.code == 3, first.out + first.err
    return first.out.split()[1]


def attest(runbook_cli, run_id: str, dst: str) -> None:
    items = checklist(dst)
    half = len(items) // 2
    for person, mine in (("alice", items[:half]), ("bob", items[half:])):
        args = [a for item in mine for a in ("--item", item)]
        assert runbook_cli("approve", run_id, "--step", "checklist", "--by", person,
                           *args).code == 0
    for gate in gates_of(dst):
        for person in ("alice", "bob"):
            assert runbook_cli("approve", run_id, "--gate", gate, "--by", person,
                               "--ticket", "CHG-1042").code == 0


def promote(runbook_cli, src: str, dst: str, *extra: str) -> str:
    run_id = start(runbook_cli, src, dst, *extra)
    attest(runbook_cli, run_id, dst)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    return run_id


def base_tag(tag: str, env: str) -> str:
    return tag[len(env) + 1:] if tag.startswith(f"{env}-") else tag


# uat1 to staging is promoted end to end by the test that promotes it twice.
ONCE = [pair for pair in VALID if pair != ("uat1", "staging")]


@pytest.mark.parametrize(("src", "dst"), ONCE, ids=[f"{a}-{b}" for a, b in ONCE])
def test_each_valid_path_promotes_end_to_end(src, dst, sandbox, runbook_cli):
    promoted_end_to_end(src, dst, sandbox, runbook_cli)


def promoted_end_to_end(src: str, dst: str, sandbox, runbook_cli) -> str:
    """Promote ``src`` to ``dst`` and check what a user would: the tag, the deployment, the
    overlay's commit and the history; the run's id."""
    if dst == "live":
        soaked("staging")
    source_tag = deployment(src)["image"].rsplit(":", 1)[1]
    target_tag = f"{dst}-{base_tag(source_tag, src)}"
    already_there = deployment(dst)["image"] == image(target_tag)
    before = ecr_tags()
    run_id = promote(runbook_cli, src, dst)
    after = ecr_tags()
    assert after[target_tag] == before[source_tag]  # same digest, no new layers
    dep = deployment(dst)
    assert dep["image"] == image(target_tag)
    overlay = Path(sandbox["overlays"]) / "overlays" / dst / "kustomization.yaml"
    assert dep["available"] == yaml.safe_load(overlay.read_text())["replicas"][0]["count"]
    if already_there:  # uat3 runs what staging runs: nothing to change, nothing to commit
        assert overlay_commits(sandbox) == ["Sandbox overlays"]
    else:
        assert overlay_commits(sandbox)[0] == (f"Promote {target_tag} to {dst} from {src} "
                                               f"(runbook run {run_id} by tester)")
    assert f"newTag: {target_tag}" in overlay.read_text()
    history = runbook_cli("history", "--env", dst, "--output", "json").json()
    assert history[0]["run_id"] == run_id and history[0]["kind"] == "promotion"
    assert history[0]["data"]["digest"] == before[source_tag]
    assert history[0]["data"]["from"] == src and history[0]["user"] == "tester"
    assert history[0]["data"]["attested_by"] == "alice, bob"
    if not already_there:  # the run's record holds the overlay's change as a unified diff
        steps = runbook_cli("status", run_id, "--output", "json").json()["steps"]
        [deploy] = [s for s in steps if s["step_id"] == "release-deploy"]
        [diff] = deploy["result"]["results"]["Set the image in the overlay"]["diff"]
        assert diff["file"].endswith(f"overlays/{dst}/kustomization.yaml")
        assert f"\n+    newTag: {target_tag}" in diff["unified"]
        assert "before" not in diff and "after" not in diff
        # What a task found and the step passed on as its outputs is held once.
        [read] = [s for s in steps if s["step_id"] == "read-source"]
        assert read["result"]["outputs"]["image"] == image(source_tag)
        assert "image" not in json.dumps(read["result"]["results"])
    return run_id


def expected_rule(src: str, dst: str) -> str:
    if src == dst:
        return "same environment"
    if dst == "live":
        return "live is promoted to only from staging"
    if STAGE[dst] < STAGE[src]:
        return "promotion never goes backward"
    if STAGE[dst] > STAGE[src] + 1:
        return "it skips an environment"
    return "not a promotion path"


def test_there_are_8_valid_and_41_refused_pairs():
    assert len(VALID) == 8 and len(REFUSED) == 41


@pytest.mark.parametrize(("src", "dst"), REFUSED, ids=[f"{a}-{b}" for a, b in REFUSED])
def test_refused_pairs_exit_2_name_the_rule_and_change_nothing(src, dst, in_shared_sandbox,
                                                               runbook_cli):
    before = snapshot(in_shared_sandbox)
    result = runbook_cli("run", "promote", "--from", src, "--to", dst)
    assert result.code == 2
    assert expected_rule(src, dst) in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert runbook_cli("plan", "promote", "--from", src, "--to", dst).code == 2
    assert runbook_cli("status", "--output", "json").json() == []
    assert snapshot(in_shared_sandbox) == before


def test_unknown_environment_is_refused(in_shared_sandbox, runbook_cli):
    result = runbook_cli("run", "promote", "--from", "prod", "--to", "live")
    assert result.code == 2
    assert "unknown environment prod (environments: dev, qa, uat1" in result.err


def test_no_step_runs_until_every_checklist_item_is_attested(in_shared_sandbox, runbook_cli):
    before = snapshot(in_shared_sandbox)
    run_id = start(runbook_cli, "uat1", "staging")
    items = checklist("staging")
    runbook_cli("approve", run_id, "--step", "checklist", "--by", "alice",
                *[a for i in items[:-1] for a in ("--item", i)])
    again = runbook_cli("resume", run_id)
    assert again.code == 3
    assert f"1 of {len(items)} items not satisfied ({items[-1]})" in again.out
    assert snapshot(in_shared_sandbox) == before
    own = runbook_cli("approve", run_id, "--step", "checklist", "--by", "tester",
                      "--item", items[-1])
    assert own.code == 2  # the person running the promotion cannot attest it
    bogus = runbook_cli("approve", run_id, "--step", "checklist", "--by", "bob",
                        "--item", "made-up")
    assert bogus.code == 2 and "no checklist item 'made-up'" in bogus.err


def test_promoting_twice_changes_nothing_the_second_time(sandbox, runbook_cli):
    promoted_end_to_end("uat1", "staging", sandbox, runbook_cli)
    first = snapshot(sandbox)
    second_run = promote(runbook_cli, "uat1", "staging")
    assert snapshot(sandbox) == first
    detail = runbook_cli("status", second_run, "--output", "json").json()
    retag = next(s for s in detail["steps"] if s["step_id"] == "release-retag")
    assert retag["result"]["changed"] is False


def test_explicit_tag_and_missing_tag(sandbox, runbook_cli):
    promote(runbook_cli, "qa", "uat2", "--tag", "1.4.3")
    assert deployment("uat2")["image"] == image("uat2-1.4.3")
    # The image's digest is read before the checklist: a missing tag fails at once.
    failed = runbook_cli("run", "promote", "--from", "qa", "--to", "uat3", "--tag", "9.9.9")
    assert failed.code == 1
    assert "image quikapp/api:9.9.9 not found in ECR" in failed.out
    assert deployment("uat3")["image"] == image("uat3-1.4.1")


def test_a_tag_that_points_elsewhere_is_never_moved(sandbox, runbook_cli):
    # staging-1.4.2 already exists for another image: the promotion must fail, not move it.
    import boto3

    ecr = boto3.client("ecr")
    other = ecr.batch_get_image(repositoryName="quikapp/api", imageIds=[{"imageTag": "1.5.1"}])
    ecr.put_image(repositoryName="quikapp/api", imageTag="staging-1.4.2",
                  imageManifest=other["images"][0]["imageManifest"])
    before = ecr_tags()
    run_id = start(runbook_cli, "uat1", "staging")
    attest(runbook_cli, run_id, "staging")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1
    assert "tags are immutable, refusing to move it" in failed.out
    assert ecr_tags() == before
    assert deployment("staging")["image"] == image("staging-1.4.1")


# The steps after the checklist; the reads before it ran when the run started.
STEPS = ["release-retag", "release-deploy", "release-wait-rollout", "record"]
BEFORE_GATE = ["read-source", "read-target", "choose-tags", "read-source-image", "announce",
               "checklist"]


def kill_after(killed_after: str, run_id: str) -> None:
    """Resume ``run_id`` in a real process and SIGKILL it once ``killed_after`` is done."""
    proc = runbook_process("resume", run_id)
    if killed_after in STEPS:
        # The step after each of these takes a second or more: the kill lands between them.
        wait_until(lambda: step_status(run_id, killed_after) == "ok", proc)
        proc.send_signal(signal.SIGKILL)
    else:
        # The rollout is done and verified but its checkpoint not yet written: hold the state
        # file's write lock so the engine blocks there, then kill it.
        home = Path(os.environ["RUNBOOK_HOME"])
        # Started by this process, not left running by the one killed before it.
        started = step_attempts(run_id, "release-wait-rollout")
        wait_until(lambda: step_status(run_id, "release-wait-rollout") == "running"
                   and step_attempts(run_id, "release-wait-rollout") > started, proc)
        lock = sqlite3.connect(home / "state.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        rc_files = home / "runs" / run_id / "release-wait-rollout" / "artifacts"
        wait_until(lambda: any(rc_files.glob("*/rc")), proc)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        lock.execute("ROLLBACK")
        lock.close()
        assert step_status(run_id, "release-wait-rollout") == "running"
    proc.communicate(timeout=10)


# Killed after each of these in turn, in one run resumed after each kill.
KILLED_AFTER = [*STEPS[:2], "rollout-done-before-checkpoint"]


def test_sigkill_after_each_step_then_resume_ends_in_the_same_state(sandbox, runbook_cli):
    run_id = start(runbook_cli, "uat1", "staging")
    attest(runbook_cli, run_id, "staging")
    for killed_after in KILLED_AFTER:
        kill_after(killed_after, run_id)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert re.findall(r"✓ (\S+) done: done in an earlier attempt", done.out)[:6] == \
        BEFORE_GATE
    assert deployment("staging")["image"] == image("staging-1.4.2")
    assert deployment("staging")["revision"] == "3"
    commits = overlay_commits(sandbox)
    assert commits[0].startswith("Promote staging-1.4.2 to staging") and \
        commits[1] == "Sandbox overlays"
    assert ecr_tags()["staging-1.4.2"] == ecr_tags()["uat1-1.4.2"]
    history = runbook_cli("history", "--env", "staging", "--output", "json").json()
    assert [h["run_id"] for h in history] == [run_id]


def test_live_only_gets_the_image_staging_runs(in_shared_sandbox, runbook_cli):
    result = runbook_cli("run", "promote", "--from", "staging", "--to", "live", "--tag", "1.4.3")
    assert result.code == 2
    assert "--tag cannot be given for live" in result.err
