"""Ctrl-C and SIGTERM in the middle of each step of promote and of the hotfix (its staging
verification window included), then resume: the run ends as an uninterrupted one would."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from engine.system import proc as engine_proc
from tests.conftest import runbook_process
from tests.runbooks import test_hotfix, test_promote
from tests.runbooks.killing import step_status, wait_until
from tests.test_execute import run_id_of
from tests.world import clock_held, deployment, ecr_tags, image, overlay_commits

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
BEFORE_CHECKLIST = ["read-source", "read-target", "read-source-image"]
AFTER_CHECKLIST = ["release-retag", "release-deploy", "release-wait-rollout"]


def playbook_started(run_id: str, step: str) -> bool:
    """The step's playbook runs: ansible-playbook has reported its first event."""
    root = engine_proc.scratch_root()
    return any(root.glob(f"runbook-{os.getuid()}-{run_id}-{step}-*/artifacts/*/job_events/"
                         "*.json"))


def interrupt_during(step: str, sig: int, *args: str) -> tuple[str, str]:
    """Run ``runbook ARGS``, send ``sig`` once ``step``'s playbook runs; return the run id
    and what it printed. It must exit 130."""
    with clock_held():  # a verification window cannot end before the signal
        proc = runbook_process(*args)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        run_id = run_id_of(first)
        wait_until(lambda: step_status(run_id, step) == "running"
                   and playbook_started(run_id, step), proc)
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130, first + out + err
    assert "✗" not in out, out
    return run_id, first + out


def statuses(runbook_cli, run_id: str) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    found = runbook_cli("status", run_id, "--output", "json").json()
    return found["run"]["status"], {s["step_id"]: s["status"] for s in found["steps"]}


def assert_interrupted(runbook_cli, run_id: str, step: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    run, steps = statuses(runbook_cli, run_id)
    assert (run, steps[step]) == ("interrupted", "interrupted"), steps
    assert "failed" not in steps.values(), steps
    return steps


# Each step once, the two signals in turn. One run takes them all in a row, resumed after
# each (a promotion takes about forty seconds on a busy machine): the steps before the
# checklist in one run, those after it in another, so that each run ends as an uninterrupted
# promotion would. The signal handling itself is the same for both signals, as
# tests/test_interrupts.py shows.
PROMOTE_CASES = [(step, ("SIGINT", "SIGTERM")[i % 2])
                 for i, step in enumerate(BEFORE_CHECKLIST + AFTER_CHECKLIST)]


@pytest.mark.parametrize("when", ["before-checklist", "after-checklist"])
def test_promote_interrupted_in_each_step_then_resumed(when, sandbox, runbook_cli):
    cases = [(step, sig) for step, sig in PROMOTE_CASES
             if (step in BEFORE_CHECKLIST) == (when == "before-checklist")]
    if when == "before-checklist":
        run_id = None
        for step, sig in cases:
            args = ("resume", run_id) if run_id else ("run", "promote", "--from", "uat1",
                                                      "--to", "staging")
            run_id, _ = interrupt_during(step, SIGNALS[sig], *args)
            assert_interrupted(runbook_cli, run_id, step)
        assert runbook_cli("resume", run_id).code == 3  # on to the checklist
        test_promote.attest(runbook_cli, run_id, "staging")
    else:
        run_id = test_promote.start(runbook_cli, "uat1", "staging")
        test_promote.attest(runbook_cli, run_id, "staging")
        for step, sig in cases:
            interrupt_during(step, SIGNALS[sig], "resume", run_id)
            assert_interrupted(runbook_cli, run_id, step)
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    # What an uninterrupted promotion of uat1 to staging leaves behind.
    assert deployment("staging")["image"] == image("staging-1.4.2")
    assert deployment("staging")["revision"] == "3"
    commits = overlay_commits(sandbox)
    assert commits[0].startswith("Promote staging-1.4.2 to staging") and \
        commits[1:] == ["Sandbox overlays"]
    tags = ecr_tags()
    assert tags["staging-1.4.2"] == tags["uat1-1.4.2"]
    history = runbook_cli("history", "--env", "staging", "--output", "json").json()
    assert [(h["run_id"], h["data"]["attested_by"]) for h in history] == [(run_id,
                                                                           "alice, bob")]
    assert statuses(runbook_cli, run_id)[0] == "done"


# The rollout and the verification window (held on the sandbox's clock), each signal once,
# in one run resumed after each interruption.
HOTFIX_CASES = [("staging-wait-rollout", "SIGTERM"), ("verify", "SIGINT"), ("verify", "SIGTERM")]


def test_hotfix_interrupted_then_resumed_keeps_staging_and_its_approval(sandbox, runbook_cli):
    run_id = test_hotfix.start(runbook_cli, "1.4.3")
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "carol",
                       "--ticket", "EC-77").code == 0
    for step, sig in HOTFIX_CASES:
        interrupt_during(step, SIGNALS[sig], "resume", run_id)
        steps = assert_interrupted(runbook_cli, run_id, step)
        # Not a failure: staging is not rolled back, live untouched.
        assert "staging-rollback" not in steps and "staging-rollback-wait" not in steps
        if step == "verify":
            assert deployment("staging")["image"] == image("staging-1.4.3")
        assert deployment("live")["image"] == image("live-1.4.0")
    done = runbook_cli("resume", run_id)  # the emergency CAB approval still counts
    assert done.code == 0, done.out
    assert deployment("staging")["image"] == image("staging-1.4.3")
    assert deployment("live")["image"] == image("live-1.4.3")
    tags = ecr_tags()
    assert tags["live-1.4.3"] == tags["staging-1.4.3"] == tags["1.4.3"]
    commits = overlay_commits(sandbox)
    assert commits[0].startswith(f"Hotfix 1.4.3 to live: {test_hotfix.REASON}")
    assert commits[1].startswith(f"Hotfix 1.4.3 to staging: {test_hotfix.REASON}")
    assert commits[2:] == ["Sandbox overlays"]
    records = runbook_cli("history", "--kind", "hotfix", "--env", "live",
                          "--output", "json").json()
    assert [(r["run_id"], r["data"]["approved_by"]) for r in records] == [(run_id, "carol")]
    staging = runbook_cli("history", "--kind", "hotfix", "--env", "staging",
                          "--output", "json").json()
    assert [(r["run_id"], r["data"]["digest"]) for r in staging] == \
        [(run_id, tags["staging-1.4.3"])]  # recorded once, resumed or not
    _, steps = statuses(runbook_cli, run_id)
    assert "staging-rollback" not in steps
