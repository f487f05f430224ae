"""The shipped runbooks give the same results whichever way their playbooks run: through the
run's warm Ansible worker or one ``ansible-playbook`` process each through ansible-runner.

Each scenario runs twice on a sandbox put back as new, with a state store of its own: every
ansible step's status, changed flag, task results and named outputs, and the layout of the
artifacts it leaves (files and job events), are compared.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import sandbox as sb
from tests.conftest import OUTER_ENV
from tests.runbooks.test_promote import promote

# What differs between two runs of the same thing, whatever runs the playbook.
_VOLATILE = [
    (re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}"), "RUN"),  # run ids
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.\d]*(Z|[+-]\d\d:?\d\d)?"), "TIME"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "COMMIT"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UUID"),
    (re.compile(r"/dev/shm/[^\s\"']+|/tmp/[^\s\"']+"), "PATH"),
    (re.compile(r"\b\d+(\.\d+)?\s?s\b"), "SECONDS"),
    (re.compile(r"\bsg-[0-9a-f]{8,17}\b|\bdb-[A-Z0-9]{20,}\b"), "AWS-ID"),  # moto's random ids
]
# Timing and process facts that a task result carries and no runbook reads.
_NOISE = {"start", "end", "delta", "invocation", "_ansible_no_log", "warnings", "deprecations"}


def normal(value: Any) -> Any:
    if isinstance(value, dict):
        # A length of time measured from now (a data-loss window) depends on when it ran.
        return {k: "SECONDS" if k.endswith("_seconds") else normal(v)
                for k, v in value.items() if k not in _NOISE}
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, str):
        for pattern, name in _VOLATILE:
            value = pattern.sub(name, value)
    return value


def ansible_steps(run_id: str, runbook_cli: Any) -> dict[str, Any]:
    status = runbook_cli("status", run_id, "--output", "json").json()
    runs = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id
    seen = {}
    for step in status["steps"]:
        artifacts = runs / step["step_id"] / "artifacts"
        if not artifacts.is_dir():
            continue
        (folder,) = artifacts.iterdir()
        events = sorted((json.loads(p.read_text()) for p in (folder / "job_events").iterdir()),
                        key=lambda e: e["counter"])
        result = step.get("result") or {}
        seen[step["step_id"]] = normal({
            "status": step["status"], "changed": result.get("changed"),
            "outputs": result.get("outputs"), "results": result.get("results"),
            "stats": result.get("stats"), "rc": result.get("rc"),
            "files": sorted(p.name for p in folder.iterdir()),
            "events": [(e["event"], e.get("event_data", {}).get("task")) for e in events],
            "event_keys": sorted({k for e in events for k in e}),
        })
    return seen


SCENARIOS: dict[str, Callable[[Any], str]] = {
    "promote": lambda cli: promote(cli, "uat1", "staging"),
    "rollback": lambda cli: _done(cli, "run", "rollback", "--env", "live"),
    "db-restore": lambda cli: _done(cli, "run", "db-restore", "--env", "uat2", "--latest"),
    "db-restore-plan": lambda cli: _planned(cli, "db-restore", "--env", "qa", "--latest"),
}


def _done(cli: Any, *args: str) -> str:
    result = cli(*args)
    assert result.code == 0, result.out
    return str(result.out.split()[1])


def _planned(cli: Any, *args: str) -> str:
    result = cli("plan", *args, "--output", "json")
    assert result.code == 0, result.out
    return json.dumps(normal([[s["id"], s.get("dry_run")] for s in result.json()["steps"]]),
                      sort_keys=True)


# It chooses how each of its two runs runs playbooks: CI's second pass of the suite, with every
# playbook through ansible-runner (RUNBOOK_ANSIBLE=runner), would repeat the first's comparison.
@pytest.mark.skipif(OUTER_ENV.get("RUNBOOK_ANSIBLE") == "runner",
                    reason="compares both ways of running playbooks whatever RUNBOOK_ANSIBLE says")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_runbook_gives_the_same_results_in_the_warm_worker_and_through_ansible_runner(
        scenario: str, sandbox: dict[str, str], runbook_cli: Any, isolated: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    for mode in ("runner", "warm"):
        if seen:  # the fixture gave the first run a sandbox as new
            sb.reset(sandbox)
        monkeypatch.setenv("RUNBOOK_HOME", str(isolated.parent / f"state-{mode}"))
        monkeypatch.setenv("RUNBOOK_ANSIBLE", mode)
        outcome = SCENARIOS[scenario](runbook_cli)
        seen[mode] = outcome if scenario.endswith("-plan") else ansible_steps(outcome,
                                                                             runbook_cli)
    assert differences(seen["runner"], seen["warm"]) == []
    assert seen["warm"]  # something ran


def differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two results differ, as paths: what a failing comparison shows."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"[:300]]
