"""Benchmarks for the engine. Run: uv run python bench/run.py [--quick]

Prints a markdown table; the figures in bench/README.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import api  # noqa: E402
from engine.run.report import NullReporter  # noqa: E402

HEADER = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: bench}\n"


def timed(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_startup(runs: int) -> list[tuple[str, str]]:
    base = timed([sys.executable, "-c", "import yaml, jsonschema"], runs)
    helpt = timed([sys.executable, "-m", "engine", "--help"], runs)
    validate = timed([sys.executable, "-m", "engine", "validate", str(REPO / "runbooks")
                      + "/demo.yaml"], runs)
    return [
        ("python -c 'import yaml, jsonschema' (baseline)", f"{base * 1000:.0f} ms"),
        ("runbook --help", f"{helpt * 1000:.0f} ms = {helpt / base:.2f}× baseline"),
        ("runbook validate demo.yaml", f"{validate * 1000:.0f} ms = {validate / base:.2f}× "
         "baseline"),
    ]


class StepTimer(NullReporter):
    def __init__(self) -> None:
        self.marks: list[float] = []

    def step_finished(self, step_id: str, name: str, status: str, message: str,
                      seconds: float) -> None:
        self.marks.append(time.perf_counter())


def bench_step_overhead(work: Path, steps: int) -> list[tuple[str, str]]:
    book = work / "noop.yaml"
    body = "".join(f"  - id: s{i}\n    set: {{n: {i}}}\n" for i in range(steps))
    book.write_text(HEADER + "steps:\n" + body)
    timer = StepTimer()
    t0 = time.perf_counter()
    result = api.run(runbook=str(book), params={}, reporter=timer)
    total = time.perf_counter() - t0
    assert result.status == "done"
    gaps = [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]
    return [(f"no-op step with its checkpoint ({steps} steps, SQLite)",
             f"median {statistics.median(gaps) * 1000:.2f} ms, p95 "
             f"{sorted(gaps)[int(len(gaps) * 0.95)] * 1000:.2f} ms, run total {total:.2f} s")]


def bench_big_plan(work: Path, steps: int) -> list[tuple[str, str]]:
    book = work / "big.yaml"
    body = "".join(
        f"  - id: s{i}\n    name: \"step {i} for {{{{ params.env }}}}\"\n"
        f"    command: {{argv: [echo, \"{{{{ vars.ns }}}}-{i}\"]}}\n" for i in range(steps))
    book.write_text(HEADER + "params:\n  env: {type: string, default: qa}\n"
                    "vars: {ns: \"quikapp-{{ params.env }}\"}\nsteps:\n" + body)
    t0 = time.perf_counter()
    api.validate([str(book)])
    t1 = time.perf_counter()
    report = api.plan(runbook=str(book), params={})
    t2 = time.perf_counter()
    assert len(report.plan.steps) == steps
    return [(f"{steps}-step runbook: validate", f"{(t1 - t0) * 1000:.0f} ms"),
            (f"{steps}-step runbook: plan (load, validate, render, dry run)",
             f"{(t2 - t1) * 1000:.0f} ms")]


def bench_ansible(work: Path, runs: int) -> list[tuple[str, str]]:
    playbook = work / "pb.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug: {msg: hi}\n")
    inventory = work / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local "
                         f"ansible_python_interpreter={sys.executable}\n")
    env = {**os.environ, "ANSIBLE_HOME": str(work / ".ansible"),
           "ANSIBLE_LOCAL_TEMP": str(work / ".ansible" / "tmp")}
    bin_dir = Path(sys.executable).parent
    plain = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                       check=True, capture_output=True, env=env)
        plain.append(time.perf_counter() - t0)
    book = work / "ans.yaml"
    book.write_text(HEADER + f"steps:\n  - id: a\n    ansible: {{playbook: {playbook}}}\n")
    ours = []
    for _ in range(runs):
        t0 = time.perf_counter()
        assert api.run(runbook=str(book), params={}).status == "done"
        ours.append(time.perf_counter() - t0)
    p, o = statistics.median(plain), statistics.median(ours)
    return [("plain ansible-playbook, one debug task", f"{p * 1000:.0f} ms"),
            ("same playbook as a runbook ansible step", f"{o * 1000:.0f} ms = {o / p:.2f}× plain")]


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    runs = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["RUNBOOK_HOME"] = str(work / "state")
        os.chdir(work)
        rows = bench_startup(runs)
        rows += bench_step_overhead(work, 200)
        rows += bench_big_plan(work, 800)  # the loader refuses more than 10,000 YAML nodes
        rows += bench_ansible(work, 3 if args.quick else 5)
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
