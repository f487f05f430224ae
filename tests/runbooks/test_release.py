"""A release of several services (inventories/quikapp-services.yaml: api, web and worker) end
to end in the sandbox: promote carries the source's whole set, changes only what differs,
in one overlay commit and one apply, and an approval is bound to every service's digest."""

from __future__ import annotations

import os
import signal
from typing import Any

import boto3
import pytest

from tests.browser import needs_chromium, parse, rendered_dom
from tests.conftest import runbook_process
from tests.runbooks import test_promote
from tests.runbooks.killing import step_status, wait_until
from tests.runbooks.test_interrupts import assert_interrupted, interrupt_during
from tests.world import kubectl_json, overlay_commits

SERVICES = ["api", "web", "worker"]
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def release(sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The sandbox as new, its runs using the inventory of three services."""
    monkeypatch.setenv("RUNBOOK_INVENTORY", sandbox["inventories"]["quikapp-services"])
    return sandbox


def image(service: str, tag: str) -> str:
    return f"{REGISTRY}/quikapp/{service}:{tag}"


def running(env: str) -> dict[str, dict[str, Any]]:
    """Each service's deployment in ``env``: its image, generation and revision."""
    found = kubectl_json("get", "deployments", "-n", f"quikapp-{env}")["items"]
    return {dep["spec"]["template"]["spec"]["containers"][0]["name"]: {
        "image": dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "generation": dep["metadata"]["generation"],
        "revision": dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]}
        for dep in found}


def digest(service: str, tag: str) -> str:
    got = boto3.client("ecr").describe_images(repositoryName=f"quikapp/{service}",
                                              imageIds=[{"imageTag": tag}])
    return str(got["imageDetails"][0]["imageDigest"])


def move_tag(service: str, tag: str, to: str) -> None:
    """Point ``tag`` of the service's repository at the image ``to`` points at."""
    ecr = boto3.client("ecr")
    repo = f"quikapp/{service}"
    manifest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": to}])
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
    ecr.put_image(repositoryName=repo, imageTag=tag,
                  imageManifest=manifest["images"][0]["imageManifest"])


def assert_uat1_release_in_staging(sandbox: dict[str, Any], before: dict[str, Any],
                                   runbook_cli, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """What promoting uat1's release to staging leaves: api and web rolled out once each
    (one generation more), the worker untouched, one overlay commit, one history record."""
    after = running("staging")
    assert after["api"]["image"] == image("api", "staging-1.4.2")
    assert after["web"]["image"] == image("web", "staging-2.3.1")
    assert after["worker"] == before["worker"]  # not even applied again
    for service in ("api", "web"):
        assert after[service]["generation"] == before[service]["generation"] + 1
        assert int(after[service]["revision"]) == int(before[service]["revision"]) + 1
    assert digest("api", "staging-1.4.2") == digest("api", "uat1-1.4.2")
    assert digest("web", "staging-2.3.1") == digest("web", "uat1-2.3.1")
    commits = overlay_commits(sandbox)
    assert commits == [f"Promote the release of uat1 to staging: api staging-1.4.2, web "
                       f"staging-2.3.1 (runbook run {run_id} by tester)", "Sandbox overlays"]
    history = runbook_cli("history", "--env", "staging", "--output", "json").json()
    assert [h["run_id"] for h in history] == [run_id]
    data = history[0]["data"]
    assert data["services"] == SERVICES and data["changed"] == ["api", "web"]
    assert data["image"] == {"api": image("api", "staging-1.4.2"),
                             "web": image("web", "staging-2.3.1"),
                             "worker": image("worker", "staging-3.0.0")}
    assert data["digest"]["worker"] == digest("worker", "staging-3.0.0")
    assert data["revision"] == {s: after[s]["revision"] for s in SERVICES}


def test_uat1_to_staging_changes_the_two_services_that_differ(release, runbook_cli):
    before = running("staging")
    plan = runbook_cli("plan", "promote", "--from", "uat1", "--to", "staging",
                       "--output", "json").json()
    assert plan["bound"]["source_digest"] == {s: digest(s, t) for s, t in
                                              (("api", "uat1-1.4.2"), ("web", "uat1-2.3.1"),
                                               ("worker", "uat1-3.0.0"))}
    assert plan["bound"]["target_image"]["worker"] == image("worker", "staging-3.0.0")
    run_id = test_promote.promote(runbook_cli, "uat1", "staging")
    assert_uat1_release_in_staging(release, before, runbook_cli, run_id)
    # The announcement lists each service, changed or not.
    received = runbook_cli("status", run_id, "--output", "json").json()["steps"]
    assert {s["step_id"]: s["status"] for s in received}["tell-done"] == "ok"
    assert running("staging") == running("staging")  # nothing keeps rolling


def test_a_digest_changed_after_the_approval_refuses_the_run_naming_the_service(
        release, runbook_cli):
    before = running("staging")
    run_id = test_promote.start(runbook_cli, "uat1", "staging")
    approved = digest("web", "uat1-2.3.1")
    move_tag("web", "uat1-2.3.1", "2.4.1")
    test_promote.attest(runbook_cli, run_id, "staging")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1, failed.out
    now = digest("web", "uat1-2.3.1")
    assert (f"web: image quikapp/web:uat1-2.3.1 is now {now}, not the approved {approved}: "
            "refusing to deploy it") in failed.out
    # Nothing was copied, not even the api's tag whose digest did not move.
    tags = {t for d in boto3.client("ecr").describe_images(repositoryName="quikapp/api")
            ["imageDetails"] for t in d.get("imageTags", [])}
    assert "staging-1.4.2" not in tags
    assert running("staging") == before
    assert overlay_commits(release) == ["Sandbox overlays"]


def test_the_plan_hash_follows_each_service_digest(release, runbook_cli):
    plan = runbook_cli("plan", "promote", "--from", "uat1", "--to", "staging",
                       "--output", "json").json()
    old = digest("worker", "uat1-3.0.0")
    move_tag("worker", "uat1-3.0.0", "3.2.0")
    moved = runbook_cli("plan", "promote", "--from", "uat1", "--to", "staging",
                        "--output", "json").json()
    assert moved["plan_hash"] != plan["plan_hash"]
    assert moved["bound"]["source_digest"]["worker"] != old
    assert moved["bound"]["source_digest"]["api"] == plan["bound"]["source_digest"]["api"]


def test_service_narrows_the_promotion(release, runbook_cli):
    before = running("staging")
    run_id = test_promote.promote(runbook_cli, "uat1", "staging", "--service", "web")
    after = running("staging")
    assert after["web"]["image"] == image("web", "staging-2.3.1")
    assert after["api"] == before["api"] and after["worker"] == before["worker"]
    assert overlay_commits(release)[0] == (f"Promote the release of uat1 to staging: web "
                                           f"staging-2.3.1 (runbook run {run_id} by tester)")
    [record] = runbook_cli("history", "--env", "staging", "--output", "json").json()
    assert record["data"]["services"] == ["web"] and record["data"]["changed"] == ["web"]
    assert record["data"]["image"] == {"web": image("web", "staging-2.3.1")}


def test_unknown_service_and_tag_without_service_are_refused(release, runbook_cli):
    bad = runbook_cli("run", "promote", "--from", "uat1", "--to", "staging",
                      "--service", "mailer")
    assert bad.code == 2
    assert "unknown service mailer (services: api, web, worker)" in bad.err
    tag = runbook_cli("run", "promote", "--from", "uat1", "--to", "staging", "--tag", "1.4.3")
    assert tag.code == 2 and "--tag names one image: give --service NAME with it" in tag.err
    assert runbook_cli("status", "--output", "json").json() == []


# The changing steps of a promotion of three services, each interrupted by each signal in
# turn in one run resumed after each: it ends as an uninterrupted promotion does.
CHANGING = ["release-retag", "release-deploy", "release-wait-rollout"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_release_interrupted_in_each_changing_step_then_resumed(sig, release, runbook_cli):
    before = running("staging")
    run_id = test_promote.start(runbook_cli, "uat1", "staging")
    test_promote.attest(runbook_cli, run_id, "staging")
    for step in CHANGING:
        interrupt_during(step, getattr(signal, sig), "resume", run_id)
        assert_interrupted(runbook_cli, run_id, step)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert_uat1_release_in_staging(release, before, runbook_cli, run_id)


def test_a_release_killed_in_each_changing_step_then_resumed(release, runbook_cli):
    before = running("staging")
    run_id = test_promote.start(runbook_cli, "uat1", "staging")
    test_promote.attest(runbook_cli, run_id, "staging")
    for step in CHANGING:
        proc = runbook_process("resume", run_id)
        wait_until(lambda step=step: step_status(run_id, step) == "running"
                   and _playbook_started(run_id, step), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert step_status(run_id, step) == "running"
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert_uat1_release_in_staging(release, before, runbook_cli, run_id)


def _playbook_started(run_id: str, step: str) -> bool:
    from tests.runbooks.test_interrupts import playbook_started

    return playbook_started(run_id, step)


def test_the_single_service_inventory_still_promotes_the_api_alone(sandbox, runbook_cli):
    assert os.environ["RUNBOOK_INVENTORY"] == sandbox["inventory"]
    before = running("staging")
    test_promote.promote(runbook_cli, "uat1", "staging")
    after = running("staging")
    assert after["api"]["image"] == image("api", "staging-1.4.2")
    assert after["web"] == before["web"] and after["worker"] == before["worker"]


def soaked_set(env: str, hours: float = 25, changed: list[str] | None = None) -> None:
    """Arrange that ``env`` got the set it runs ``hours`` ago, as a release's history record
    would say (the services of ``changed`` changed by it)."""
    from datetime import UTC, datetime, timedelta

    from engine.store import HistoryRecord, open_store

    now = running(env)
    at = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
    store = open_store()
    store.add_history(HistoryRecord(
        at=at, run_id=f"earlier-{hours:g}h", user="dave", kind="promotion", env=env,
        data={"image": {s: now[s]["image"] for s in SERVICES},
              "digest": {s: digest(s, now[s]["image"].rsplit(":", 1)[1]) for s in SERVICES},
              "services": SERVICES, "changed": changed or SERVICES}))
    store.close()


def soak_detail(runbook_cli, run_id: str) -> str:  # type: ignore[no-untyped-def]
    steps = runbook_cli("status", run_id, "--output", "json").json()["steps"]
    check = next(s for s in steps if s["step_id"] == "checklist")
    return str(check["result"]["items"]["staging-soak"]["detail"])


def test_staging_to_live_takes_exactly_the_set_staging_verified(release, runbook_cli):
    soaked_set("staging")
    staging, before = running("staging"), running("live")
    run_id = test_promote.promote(runbook_cli, "staging", "live")
    assert "staging has run this set (api " in soak_detail(runbook_cli, run_id)
    after = running("live")
    for service in SERVICES:
        tag = staging[service]["image"].rsplit(":", 1)[1].removeprefix("staging-")
        assert after[service]["image"] == image(service, f"live-{tag}")
        assert digest(service, f"live-{tag}") == digest(service, f"staging-{tag}")
    assert after["worker"] == before["worker"]  # live already ran staging's worker
    [record] = runbook_cli("history", "--env", "live", "--output", "json").json()
    assert record["data"]["changed"] == ["api", "web"]
    # Rolled back: both services live changed return to what ran before, in one commit.
    promoted = running("live")
    back = runbook_cli("run", "rollback", "--env", "live")
    assert back.code == 0, back.out
    now = running("live")
    assert (now["api"]["image"], now["web"]["image"]) == (image("api", "live-1.4.0"),
                                                          image("web", "live-2.2.9"))
    assert now["worker"] == promoted["worker"]
    for service in ("api", "web"):
        assert now[service]["generation"] == promoted[service]["generation"] + 1
    assert overlay_commits(release)[0] == (f"Roll live back: api live-1.4.0, web live-2.2.9 "
                                           f"(runbook run {back.out.split()[1]} by tester)")


def test_service_narrows_the_promotion_to_live(release, runbook_cli):
    soaked_set("staging")
    before = running("live")
    run_id = test_promote.promote(runbook_cli, "staging", "live", "--service", "web")
    assert "staging has run this set (web " in soak_detail(runbook_cli, run_id)
    after = running("live")
    assert after["web"]["image"] == image("web", "live-2.3.0")
    assert after["api"] == before["api"] and after["worker"] == before["worker"]


def test_a_newer_change_of_one_service_restarts_the_soak_of_the_set(release, runbook_cli):
    soaked_set("staging")
    soaked_set("staging", hours=2, changed=["web"])  # web changed two hours ago
    before = running("live")
    failed = runbook_cli("run", "promote", "--from", "staging", "--to", "live")
    assert failed.code == 1, failed.out + failed.err  # a check that fails ends the run
    detail = soak_detail(runbook_cli, failed.out.split()[1])
    assert "when the promotion of run earlier-2h changed web (2.0 h of 24 h)" in detail
    assert running("live") == before


# Rollback of a release.

def promoted_to_staging(runbook_cli) -> str:  # type: ignore[no-untyped-def]
    return test_promote.promote(runbook_cli, "uat1", "staging")


def assert_staging_rolled_back(sandbox: dict[str, Any], promoted: dict[str, Any],
                               runbook_cli, run_id: str, services: list[str]) -> None:  # type: ignore[no-untyped-def]
    """``services`` of staging run what they ran before uat1's release again, each rolled
    out once more; the others are as the release left them; one commit on the release's."""
    before = {"api": image("api", "staging-1.4.1"), "web": image("web", "staging-2.3.0")}
    now = running("staging")
    for service in SERVICES:
        if service in services:
            assert now[service]["image"] == before[service]
            assert now[service]["generation"] == promoted[service]["generation"] + 1
        else:
            assert now[service] == promoted[service]
    tags = ", ".join(f"{s} {before[s].rsplit(':', 1)[1]}" for s in services)
    commits = overlay_commits(sandbox)
    assert commits[0] == f"Roll staging back: {tags} (runbook run {run_id} by tester)"
    assert commits[1].startswith("Promote the release of uat1 to staging") and len(commits) == 3
    record = runbook_cli("history", "--env", "staging", "--output", "json").json()[0]
    assert (record["run_id"], record["kind"]) == (run_id, "rollback")
    assert record["data"]["changed"] == services
    assert runbook_cli("drift", "--env", "staging").code == 0


def test_rollback_returns_every_service_the_last_release_changed(release, runbook_cli):
    promoted_to_staging(runbook_cli)
    promoted = running("staging")
    done = runbook_cli("run", "rollback", "--env", "staging")
    assert done.code == 0, done.out
    assert_staging_rolled_back(release, promoted, runbook_cli, done.out.split()[1],
                               ["api", "web"])


def test_rollback_of_one_service_of_the_release(release, runbook_cli):
    promoted_to_staging(runbook_cli)
    promoted = running("staging")
    done = runbook_cli("run", "rollback", "--env", "staging", "--service", "web")
    assert done.code == 0, done.out
    assert_staging_rolled_back(release, promoted, runbook_cli, done.out.split()[1], ["web"])


def test_rollback_to_the_set_an_earlier_run_deployed(release, runbook_cli):
    release_run = promoted_to_staging(runbook_cli)
    promoted = running("staging")
    assert runbook_cli("run", "rollback", "--env", "staging").code == 0
    again = runbook_cli("run", "rollback", "--env", "staging", "--to-release", release_run)
    assert again.code == 0, again.out
    now = running("staging")
    assert {s: now[s]["image"] for s in SERVICES} == {s: promoted[s]["image"] for s in SERVICES}
    assert now["worker"] == promoted["worker"]  # never touched
    assert overlay_commits(release)[0] == (
        f"Roll staging back to the set of run {release_run}: api staging-1.4.2, web "
        f"staging-2.3.1 (runbook run {again.out.split()[1]} by tester)")
    unknown = runbook_cli("run", "rollback", "--env", "staging", "--to-release", "no-such-run")
    assert unknown.code == 1 and "run no-such-run recorded no change of staging" in unknown.out


def test_a_rollback_with_nothing_recorded_is_refused(release, runbook_cli):
    refused = runbook_cli("run", "rollback", "--env", "staging")
    assert refused.code == 2, refused.out + refused.err
    assert "staging: no change of it is recorded: nothing to roll back to" in refused.out
    revision = runbook_cli("run", "rollback", "--env", "staging", "--to-revision", "1")
    assert revision.code == 2 and "give --to-release RUN" in revision.err


def test_a_rollout_that_fails_names_its_service_and_resume_finishes(release, runbook_cli):
    from tests.world import kubectl

    promoted_to_staging(runbook_cli)
    promoted = running("staging")
    proc = runbook_process("run", "rollback", "--env", "staging")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    wait_until(lambda: step_status(run_id, "release-wait-rollout") == "running", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    # Someone sets web's image by hand before the wait is resumed: its check fails.
    kubectl("set", "image", "deployment/staging-quikapp-web", f"web={image('web', '2.4.1')}",
            "-n", "quikapp-staging")
    failed = runbook_cli("resume", run_id)
    assert failed.code == 1, failed.out
    assert (f"web: staging-quikapp-web runs {image('web', '2.4.1')}, expected "
            f"{image('web', 'staging-2.3.0')}") in failed.out
    assert f"(api runs {image('api', 'staging-1.4.1')}, revision " in failed.out
    # Set back to what the rollback's overlay says, the run's resume finishes it.
    kubectl("set", "image", "deployment/staging-quikapp-web",
            f"web={image('web', 'staging-2.3.0')}", "-n", "quikapp-staging")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert running("staging")["web"]["image"] == image("web", "staging-2.3.0")
    assert running("staging")["worker"] == promoted["worker"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_release_rollback_interrupted_in_each_changing_step_then_resumed(
        sig, release, runbook_cli):
    promoted_to_staging(runbook_cli)
    promoted = running("staging")
    run_id = None
    for step in CHANGING:
        args = ("resume", run_id) if run_id else ("run", "rollback", "--env", "staging")
        run_id, _ = interrupt_during(step, getattr(signal, sig), *args)
        assert_interrupted(runbook_cli, run_id, step)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert_staging_rolled_back(release, promoted, runbook_cli, run_id, ["api", "web"])


def test_a_release_rollback_killed_in_each_changing_step_then_resumed(release, runbook_cli):
    promoted_to_staging(runbook_cli)
    promoted = running("staging")
    run_id = None
    for step in CHANGING:
        proc = runbook_process(*(("resume", run_id) if run_id else
                                 ("run", "rollback", "--env", "staging")))
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        run_id = first[2] if first[0] == "resuming" else first[1]
        wait_until(lambda step=step: step_status(run_id, step) == "running"
                   and _playbook_started(run_id, step), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert_staging_rolled_back(release, promoted, runbook_cli, run_id, ["api", "web"])


# A hotfix of one service of the release.

def test_a_hotfix_of_one_service_leaves_the_others(release, runbook_cli):
    from tests.runbooks import test_hotfix

    before = {env: running(env) for env in ("staging", "live")}
    refused = runbook_cli("run", "hotfix", "--tag", "2.3.2", "--reason", "XSS in the footer")
    assert refused.code == 2 and "a hotfix is one service's image: give --service" in refused.err
    run_id = test_hotfix.start(runbook_cli, "2.3.2", "--service", "web")
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol",
                       "--ticket", "EC-9").code == 0
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    for env in ("staging", "live"):
        now = running(env)
        assert now["web"]["image"] == image("web", f"{env}-2.3.2")
        assert now["api"] == before[env]["api"] and now["worker"] == before[env]["worker"]
        [record] = runbook_cli("history", "--env", env, "--output", "json").json()
        assert record["data"]["services"] == ["web"] and record["data"]["changed"] == ["web"]
        assert runbook_cli("drift", "--env", env).code == 0


# What shows a release shows its services.

def test_the_plan_lists_each_service_changed_or_not(release, runbook_cli):
    args = ("plan", "promote", "--from", "uat1", "--to", "staging")
    plan = runbook_cli(*args, "--output", "json").json()
    assert plan["bound"]["changed"] == ["api", "web"]
    text = runbook_cli(*args).out
    worker = text.index("    worker (unchanged):")
    assert "    api (changes):" in text and "    web (changes):" in text
    assert f"        source_digest: {digest('worker', 'uat1-3.0.0')}" in text[worker:]
    markdown = runbook_cli(*args, "--output", "markdown").out
    assert "| Service | Change | `source_tag` |" in markdown
    assert f"| worker | unchanged | `uat1-3.0.0` | `{digest('worker', 'uat1-3.0.0')}` |" in \
        markdown
    html = runbook_cli(*args, "--output", "html").out
    assert "<h3>Per service</h3>" in html and "<td>unchanged</td>" in html


def test_history_board_and_drift_show_each_service(release, runbook_cli):
    run_id = test_promote.promote(runbook_cli, "uat1", "staging")
    lines = runbook_cli("history", "--env", "staging").out.splitlines()
    assert f"run {run_id}" in lines[0] and "attested_by=alice, bob" in lines[0]
    assert lines[1].split()[:3] == ["api", "changes", f"digest={digest('api', 'uat1-1.4.2')}"]
    assert lines[3].split()[:2] == ["worker", "unchanged"]
    board = runbook_cli("board").out
    staging = board[board.index("\nstaging ") + 1:]
    assert staging.splitlines()[1].split() == ["runs", "api", image("api", "staging-1.4.2")]
    assert staging.splitlines()[3].split() == ["worker", image("worker", "staging-3.0.0")]
    assert "overlay   as the cluster" in staging
    rows = {r["env"]: r for r in runbook_cli("board", "--output", "json").json()["environments"]}
    assert rows["staging"]["image"]["web"] == image("web", "staging-2.3.1")
    assert rows["staging"]["agrees"] is True and rows["staging"]["since"]
    drift = runbook_cli("drift", "--env", "staging").out.splitlines()
    assert drift[:2] == ["staging    ok", "    api"]
    assert drift[4].split()[:2] == ["history", image("api", "staging-1.4.2")]
    # One service changed by hand: the drift names it, the others agree.
    from tests.world import kubectl

    kubectl("set", "image", "deployment/staging-quikapp-worker",
            f"worker={image('worker', '3.1.0')}", "-n", "quikapp-staging")
    found = runbook_cli("drift", "--env", "staging", "--output", "json").json()
    overlay, history = found[0]["problems"]
    assert overlay == (f"staging worker: the overlay renders {image('worker', 'staging-3.0.0')}"
                       f", the cluster runs {image('worker', '3.1.0')}")
    assert history.startswith("staging worker: the last recorded change (promotion at ")
    assert history.endswith(f"is to {image('worker', 'staging-3.0.0')}, the cluster runs "
                            f"{image('worker', '3.1.0')}")


@needs_chromium
def test_the_board_and_the_change_record_pages_show_each_service(release, runbook_cli, tmp_path):
    run_id = test_promote.promote(runbook_cli, "uat1", "staging")
    page = tmp_path / "board.html"
    assert runbook_cli("board", "--html", str(page)).code == 0
    rows, _, _ = parse(rendered_dom(page, tmp_path / "chromium"))
    [staging] = [row for row in rows if row and row[0] == "staging"]
    for service, tag in (("api", "staging-1.4.2"), ("web", "staging-2.3.1"),
                         ("worker", "staging-3.0.0")):  # one line each
        assert f"{service} {image(service, tag)}" in staging[1]
    assert runbook_cli("audit", "export", "--run", run_id, "--format", "html",
                       "--file", str(tmp_path / "record.html")).code == 0
    rows, whole, _ = parse(rendered_dom(tmp_path / "record.html", tmp_path / "chromium"))
    assert "The promotion of staging" in whole
    changed = {row[0]: row[1] for row in rows if row and row[0] in SERVICES}
    assert changed == {"api": "changes", "web": "changes", "worker": "unchanged"}
