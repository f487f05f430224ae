"""Benchmark: a sandbox promotion (uat1 → staging) and a rollback of live, each split into
engine, Ansible and waiting, and the bytes the promotion's manifest-copy retag moves against
the guide's docker pull/tag/push.

Run: uv run python bench/promote.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import api, sandbox  # noqa: E402
from engine.approvals import approve  # noqa: E402
from engine.report import NullReporter  # noqa: E402

WAIT_TASK = "Wait until the rollout is complete"


class Timer(NullReporter):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.took: dict[str, float] = {}

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        self.started[step_id] = time.perf_counter()

    def step_finished(self, step_id: str, name: str, status: str, message: str,
                      seconds: float) -> None:
        if step_id in self.started:
            self.took[step_id] = time.perf_counter() - self.started[step_id]


def waiting_seconds(run_dir: Path, step: str) -> float:
    """Time ansible spent in the rollout wait task, from ansible-runner's job events."""
    total = 0.0
    for event in run_dir.glob(f"{step}/artifacts/*/job_events/*.json"):
        data = json.loads(event.read_text())
        if data.get("event") == "runner_on_ok" and \
                data["event_data"].get("task") == WAIT_TASK:
            total += float(data["event_data"]["duration"])
    return total


def one_promotion(items: list[str]) -> dict[str, float]:
    first = api.run(runbook="promote", params={"from": "uat1", "to": "staging"},
                    user="operator")
    assert first.status == "waiting", first.message
    approve(run_id=first.run_id, step="checklist", by="alice", items=items)
    timer = Timer()
    t0 = time.perf_counter()
    done = api.resume(run_id=first.run_id, reporter=timer)
    total = time.perf_counter() - t0
    assert done.status == "done", done.message
    parts = split(first.run_id, timer, total, "release-wait-rollout")
    retag = next(s for s in done.steps if s.step_id == "release-retag").result or {}
    copy = retag["outputs"]
    return {**parts, "image_bytes": copy["image_bytes"],
            "manifest_bytes": copy["manifest_bytes"], "layers": copy["layers"]}


def split(run_id: str, timer: Timer, total: float, wait_step: str) -> dict[str, float]:
    run_dir = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id
    in_ansible = sum(took for step, took in timer.took.items()
                     if (run_dir / step / "artifacts").is_dir())
    waiting = waiting_seconds(run_dir, wait_step)
    return {"total": total, "waiting": waiting, "ansible": in_ansible - waiting,
            "engine": total - in_ansible}


def one_rollback() -> dict[str, float]:
    timer = Timer()
    t0 = time.perf_counter()
    done = api.run(runbook="rollback", params={"env": "live"}, user="operator",
                   reporter=timer)
    total = time.perf_counter() - t0
    assert done.status == "done", done.message
    return split(done.run_id, timer, total, "wait-rollout")


def table(title: str, samples: list[dict[str, float]]) -> None:
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(f"{title}, median of {len(samples)} (rollout convergence delay 1.0 s):\n")
    print("| part | seconds | share |\n|---|---|---|")
    for part in ("engine", "ansible", "waiting"):
        print(f"| {part} | {med[part]:.2f} | {med[part] / med['total']:.0%} |")
    print(f"| total | {med['total']:.2f} | 100% |\n")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RUNBOOK_HOME"] = str(Path(tmp) / "state")
        os.environ["RUNBOOK_USER"] = "operator"  # the sandbox makes its operator a person
        os.chdir(tmp)
        samples, rollbacks = [], []
        for _ in range(args.runs):
            where = Path(tmp) / f"sandbox-{len(samples)}"
            info = sandbox.up(where, rollout_delay=1.0)
            os.environ.update(sandbox.environment(info))
            inv = api.load_inventory(None)
            items = [i["id"] for i in inv.data["checklists"]["uat-staging"]]
            try:
                samples.append(one_promotion(items))
                rollbacks.append(one_rollback())
            finally:
                sandbox.down(where)
    table("promote uat1 → staging in the sandbox (after its checklist)", samples)
    table("rollback --env live in the sandbox, to the verified previous image", rollbacks)
    s = samples[0]
    pulled = s["image_bytes"] + s["manifest_bytes"]
    print("| retag method | bytes over the network |\n|---|---|")
    print(f"| manifest copy (batch_get_image + put_image) | {2 * s['manifest_bytes']:,} |")
    print(f"| docker pull + tag + push ({int(s['layers'])} layers, layers already in the "
          f"registry on push) | {pulled + s['manifest_bytes']:,} |")
    print(f"\nratio: the manifest copy moves {2 * s['manifest_bytes'] / pulled:.6%} of the "
          "bytes of a pull/tag/push")


if __name__ == "__main__":
    main()
