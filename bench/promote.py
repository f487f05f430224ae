"""Benchmark: a sandbox promotion (uat1 → staging) and a rollback of live, each done three
ways side by side in one run: the runbook with the warm Ansible worker (RUNBOOK_ANSIBLE=warm),
the runbook through ansible-runner (RUNBOOK_ANSIBLE=runner), and the guide's commands as a
bash script (bench/guide-promote.sh, bench/guide-rollback.sh; the baseline). The runbook's
time is split into engine, Ansible and waiting; the bytes the promotion's manifest-copy retag
moves are set against the guide's docker pull/tag/push.

With ``--release``: a promotion uat1 → staging of the sandbox's release of three services
(inventory quikapp-services: api, web, worker; two of them change) by the runbook, beside the
guide's script run once for each service (the baseline).

Run: uv run python bench/promote.py [--runs N] [--rollout-delay SECONDS] [--release]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import api, sandbox  # noqa: E402
from engine.api.approvals import approve  # noqa: E402
from engine.run.report import NullReporter  # noqa: E402

WAIT_TASK = "Wait until the rollout is complete and runs the expected image"
WAYS = ("warm", "cli", "runner", "bash")
TITLES = {"warm": "runbook, warm worker kept between runs (the default)",
          "cli": "runbook as commands (`runbook run`, `runbook resume` processes), warm worker "
                 "kept between runs",
          "runner": "runbook, ansible-runner (`RUNBOOK_ANSIBLE=runner`)",
          "bash": "the guide's commands, bash (baseline)"}
PROMOTE_TARGET = 1.3  # warm promote against the bash script
RELEASE_TARGET = 0.5  # a release of three services against the script run three times
SERVICES = ("api", "web", "worker")
ROLLBACK_TARGET = 1.0  # seconds of a rollback beyond the rollout's own convergence

Sample = dict[str, float]


class Timer(NullReporter):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.took: dict[str, float] = {}

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        self.started[step_id] = time.perf_counter()

    def step_finished(self, step_id: str, name: str, status: str, message: str,
                      seconds: float) -> None:
        # A resume also reports the steps it took as done, which it did not start.
        started = self.started.pop(step_id, None)
        if started is not None:
            self.took[step_id] = time.perf_counter() - started


def waiting_seconds(run_dir: Path, step: str) -> float:
    """Time ansible spent in the rollout wait task, from the step's job events."""
    total = 0.0
    for event in run_dir.glob(f"{step}/artifacts/*/job_events/*.json"):
        data = json.loads(event.read_text())
        if data.get("event") == "runner_on_ok" and \
                data["event_data"].get("task") == WAIT_TASK:
            total += float(data["event_data"]["duration"])
    return total


def split(run_id: str, timer: Timer, total: float, wait_step: str) -> Sample:
    run_dir = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id
    in_ansible = sum(took for step, took in timer.took.items()
                     if (run_dir / step / "artifacts").is_dir())
    waiting = waiting_seconds(run_dir, wait_step)
    return {"total": total, "waiting": waiting, "ansible": in_ansible - waiting,
            "engine": total - in_ansible}


def runbook_promotion(items: list[str], inventory: str | None = None) -> Sample:
    """The promote runbook up to its checklist, the checklist attested, then the rest: the
    time of both parts, the person's part left out."""
    timer = Timer()
    t0 = time.perf_counter()
    first = api.run(runbook="promote", params={"from": "uat1", "to": "staging"},
                    inventory=inventory, user="operator", reporter=timer)
    to_checklist = time.perf_counter() - t0
    assert first.status == "waiting", first.message
    approve(run_id=first.run_id, step="checklist", by="alice", items=items)
    t0 = time.perf_counter()
    done = api.resume(run_id=first.run_id, reporter=timer)
    after = time.perf_counter() - t0
    assert done.status == "done", done.message
    parts = split(first.run_id, timer, to_checklist + after, "release-wait-rollout")
    retag = next(s for s in done.steps if s.step_id == "release-retag").result or {}
    copy = retag["outputs"]
    return {**parts, "to_checklist": to_checklist, "after_checklist": after,
            "image_bytes": copy["image_bytes"], "manifest_bytes": copy["manifest_bytes"],
            "layers": copy["layers"]}


def runbook_rollback() -> Sample:
    timer = Timer()
    t0 = time.perf_counter()
    done = api.run(runbook="rollback", params={"env": "live"}, user="operator",
                   reporter=timer)
    total = time.perf_counter() - t0
    assert done.status == "done", done.message
    return split(done.run_id, timer, total, "wait-rollout")


def runbook(*args: str, code: int = 0, user: str = "operator") -> str:
    done = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, cwd=REPO,
                          env={**os.environ, "RUNBOOK_USER": user})
    if done.returncode != code:
        raise SystemExit(f"runbook {' '.join(args)} exited with {done.returncode}:\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


def cli_promotion(items: list[str]) -> Sample:
    """The promotion as commands: run (to the checklist), approve, resume; the approval's own
    process not counted."""
    t0 = time.perf_counter()
    out = runbook("run", "promote", "--from", "uat1", "--to", "staging", "--output", "json",
                  code=3)
    to_checklist = time.perf_counter() - t0
    run_id = json.loads(out)["run_id"]
    runbook("approve", run_id, "--step", "checklist", "--by", "alice",
            *[a for item in items for a in ("--item", item)], user="alice")
    t0 = time.perf_counter()
    runbook("resume", run_id)
    after = time.perf_counter() - t0
    return {"total": to_checklist + after, "to_checklist": to_checklist,
            "after_checklist": after}


def cli_rollback() -> Sample:
    t0 = time.perf_counter()
    runbook("run", "rollback", "--env", "live")
    return {"total": time.perf_counter() - t0}


def script(argv: Sequence[str]) -> Sample:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr}")
    return {"total": took}


def median(samples: list[Sample], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def one_round(where: Path, info: dict[str, Any], state: Path, order: Sequence[str],
              items: list[str], promotions: dict[str, list[Sample]],
              rollbacks: dict[str, list[Sample]]) -> None:
    """Each way once, each from the sandbox as it was seeded and with a store of its own
    (the runbooks check the history they find against the cluster)."""
    for way in order:
        sandbox.reset(info)
        os.environ["RUNBOOK_HOME"] = str(state / way)
        if way == "bash":
            promotions[way].append(script([str(REPO / "bench" / "guide-promote.sh"),
                                           str(where), "uat1", "staging"]))
            rollbacks[way].append(script([str(REPO / "bench" / "guide-rollback.sh"),
                                          str(where), "live"]))
        elif way == "cli":
            os.environ["RUNBOOK_ANSIBLE"] = "warm"
            promotions[way].append(cli_promotion(items))
            rollbacks[way].append(cli_rollback())
        else:
            os.environ["RUNBOOK_ANSIBLE"] = way
            promotions[way].append(runbook_promotion(items))
            rollbacks[way].append(runbook_rollback())


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def promotion_table(samples: dict[str, list[Sample]]) -> None:
    base = median(samples["bash"], "total")
    print("promote uat1 → staging (the checklist's attestation not counted):\n")
    print("| way | to the checklist | after the checklist | total | total ÷ bash "
          "| after the checklist ÷ bash |\n|---|---|---|---|---|---|")
    for way in WAYS:
        if way == "bash":
            print(f"| {TITLES[way]} | | | {seconds(base)} | 1.00× | |")
            continue
        total = median(samples[way], "total")
        after = median(samples[way], "after_checklist")
        print(f"| {TITLES[way]} | {seconds(median(samples[way], 'to_checklist'))} "
              f"| {seconds(after)} | {seconds(total)} | {total / base:.2f}× "
              f"| {after / base:.2f}× |")
    # The measure: the promotion of a run whose checklist is attested (its resume), which does
    # the script's work: the source's digest checked again, the drift check, retag, deploy,
    # wait; the reads before the checklist and the stop there are the checklist's own cost.
    warm = median(samples["warm"], "after_checklist") / base
    total = median(samples["warm"], "total") / base
    cli = median(samples["cli"], "after_checklist") / base
    print(f"\nAs commands (`runbook resume` as a process): {cli:.2f}× after the checklist.")
    print(f"\ntarget: warm, after the checklist, ≤ {PROMOTE_TARGET}× bash: {warm:.2f}× — "
          f"{'met' if warm <= PROMOTE_TARGET else 'not met'} (the whole run, both of its "
          f"processes and the stop at the checklist: {total:.2f}×)\n")


def rollback_table(samples: dict[str, list[Sample]], delay: float) -> None:
    base = median(samples["bash"], "total")
    print("`rollback --env live`, to the verified previous image:\n")
    print("| way | total | rollout wait task | total − wait task | total − convergence delay "
          "| total ÷ bash |\n|---|---|---|---|---|---|")
    for way in WAYS:
        total = median(samples[way], "total")
        beyond_delay = seconds(total - delay)
        if way in ("bash", "cli"):
            ratio = "1.00×" if way == "bash" else f"{total / base:.2f}×"
            print(f"| {TITLES[way]} | {seconds(total)} | | | {beyond_delay} | {ratio} |")
            continue
        waiting = median(samples[way], "waiting")
        beyond = statistics.median(s["total"] - s["waiting"] for s in samples[way])
        print(f"| {TITLES[way]} | {seconds(total)} | {seconds(waiting)} | {seconds(beyond)} "
              f"| {beyond_delay} | {total / base:.2f}× |")
    beyond = median(samples["warm"], "total") - delay
    cli = median(samples["cli"], "total") - delay
    print(f"\nAs a `runbook run` process: {cli:.2f} s beyond the convergence.")
    print(f"\ntarget: warm rollback ≤ {ROLLBACK_TARGET:.0f} s plus the rollout's own "
          f"convergence ({delay:.1f} s): {beyond:.2f} s beyond it — "
          f"{'met' if beyond <= ROLLBACK_TARGET else 'not met'}. The wait task's time "
          "includes its module's start as well as the convergence.\n")


def split_table(title: str, samples: dict[str, list[Sample]]) -> None:
    ways = [w for w in WAYS if w not in ("bash", "cli")]
    print(f"{title}, where the runbook's time goes:\n")
    print("| part | " + " | ".join(TITLES[w].split(" (")[0] for w in ways) + " |\n|---|"
          + "---|" * len(ways))
    for part in ("engine", "ansible", "waiting", "total"):
        cells = []
        for way in ways:
            value, total = median(samples[way], part), median(samples[way], "total")
            cells.append(f"{seconds(value)} ({value / total:.0%})")
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("\n*engine*: outside the ansible steps (planning, rendering, checkpoints, journal, "
          "drift checks, stopping the warm worker at the end of each run); *ansible*: inside "
          "them, less *waiting*: the rollout wait task, from its job events (its module's "
          "start included).\n")


def bytes_table(sample: Sample) -> None:
    pulled = sample["image_bytes"] + sample["manifest_bytes"]
    print("| retag method | bytes over the network |\n|---|---|")
    print(f"| manifest copy (batch_get_image + put_image) | {2 * sample['manifest_bytes']:,.0f} |")
    print(f"| docker pull + tag + push ({sample['layers']:.0f} layers, layers already in the "
          f"registry on push) | {pulled + sample['manifest_bytes']:,.0f} |")
    print(f"\nratio: the manifest copy moves {2 * sample['manifest_bytes'] / pulled:.6%} of the "
          "bytes of a pull/tag/push")


def run_all(runs: int, rollout_delay: float, tmp: Path,
            progress: Callable[[str], None]) -> tuple[dict[str, list[Sample]],
                                                      dict[str, list[Sample]]]:
    promotions: dict[str, list[Sample]] = {way: [] for way in WAYS}
    rollbacks: dict[str, list[Sample]] = {way: [] for way in WAYS}
    os.environ["RUNBOOK_USER"] = "operator"  # the sandbox makes its operator a person
    for n in range(runs):
        where = tmp / f"sandbox-{n}"
        info = sandbox.up(where, rollout_delay=rollout_delay)
        os.environ.update(sandbox.environment(info))
        inv = api.load_inventory(None)
        items = [i["id"] for i in inv.data["checklists"]["uat-staging"]]
        order = WAYS[n % len(WAYS):] + WAYS[:n % len(WAYS)]  # no way always goes first
        progress(f"run {n + 1} of {runs}: {', '.join(order)}")
        # The sandbox's first answers (moto's, the emulator's) are slow: whichever way went
        # first would pay for them. One promotion by the script, not counted, warms it.
        script([str(REPO / "bench" / "guide-promote.sh"), str(where), "uat1", "staging"])
        try:
            one_round(where, info, tmp / f"state-{n}", order, items, promotions, rollbacks)
        finally:
            sandbox.down(where)
    return promotions, rollbacks


def release_all(runs: int, rollout_delay: float, tmp: Path,
                progress: Callable[[str], None]) -> dict[str, list[Sample]]:
    """The release of three services promoted by the runbook (warm) and by the script run
    for each service, in turn, each from the sandbox as seeded with a store of its own."""
    samples: dict[str, list[Sample]] = {"warm": [], "bash": []}
    os.environ["RUNBOOK_USER"] = "operator"
    os.environ["RUNBOOK_ANSIBLE"] = "warm"
    for n in range(runs):
        where = tmp / f"sandbox-{n}"
        info = sandbox.up(where, rollout_delay=rollout_delay)
        os.environ.update(sandbox.environment(info))
        inventory = info["inventories"]["quikapp-services"]
        items = [i["id"] for i in api.load_inventory(inventory).data["checklists"]["uat-staging"]]
        order = ("warm", "bash") if n % 2 == 0 else ("bash", "warm")
        progress(f"run {n + 1} of {runs}: {', '.join(order)}")
        script([str(REPO / "bench" / "guide-promote.sh"), str(where), "uat1", "staging"])
        try:
            for way in order:
                sandbox.reset(info)
                os.environ["RUNBOOK_HOME"] = str(tmp / f"state-{n}" / way)
                if way == "bash":
                    took = [script([str(REPO / "bench" / "guide-promote.sh"), str(where),
                                    "uat1", "staging", service])["total"]
                            for service in SERVICES]
                    samples[way].append({"total": sum(took)})
                else:
                    samples[way].append(runbook_promotion(items, inventory))
        finally:
            sandbox.down(where)
    return samples


def release_table(samples: dict[str, list[Sample]]) -> None:
    base = median(samples["bash"], "total")
    warm = samples["warm"]
    print("promote uat1 → staging, a release of three services (api, web, worker; api and web "
          "change), the checklist's attestation not counted:\n")
    print("| way | to the checklist | after the checklist | total | total ÷ bash "
          "| after the checklist ÷ bash |\n|---|---|---|---|---|---|")
    print(f"| {TITLES['warm']} | {seconds(median(warm, 'to_checklist'))} "
          f"| {seconds(median(warm, 'after_checklist'))} | {seconds(median(warm, 'total'))} "
          f"| {median(warm, 'total') / base:.2f}× "
          f"| {median(warm, 'after_checklist') / base:.2f}× |")
    print(f"| the guide's commands, bash, once for each service (baseline) | | "
          f"| {seconds(base)} | 1.00× | |")
    after = median(warm, "after_checklist") / base
    total = median(warm, "total") / base
    print(f"\ntarget: warm, after the checklist, ≤ {RELEASE_TARGET}× the script run three "
          f"times: {after:.2f}× — {'met' if after <= RELEASE_TARGET else 'not met'} (the "
          f"whole run, both of its processes and the stop at the checklist: {total:.2f}×)\n")


def header(runs: int, rollout_delay: float) -> None:
    print("```bash\nuv run python bench/promote.py " + " ".join(sys.argv[1:]) + "\n```\n")
    print(f"Median of {runs}, a fresh sandbox each run, each way starting from the sandbox "
          f"as seeded; the sandbox's rollout convergence delay: {rollout_delay:.1f} s.\n")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rollout-delay", type=float, default=1.0,
                        help="seconds the sandbox's deployments take to converge")
    parser.add_argument("--release", action="store_true",
                        help="a release of three services against the script run for each")
    args = parser.parse_args()
    if args.release:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            samples = release_all(args.runs, args.rollout_delay, Path(tmp),
                                  lambda line: print(line, file=sys.stderr))
        header(args.runs, args.rollout_delay)
        release_table(samples)
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        promotions, rollbacks = run_all(args.runs, args.rollout_delay, Path(tmp),
                                        lambda line: print(line, file=sys.stderr))
    header(args.runs, args.rollout_delay)
    promotion_table(promotions)
    rollback_table(rollbacks, args.rollout_delay)
    split_table("promote uat1 → staging", promotions)
    split_table("rollback --env live", rollbacks)
    bytes_table(promotions["warm"][0])


if __name__ == "__main__":
    main()
