"""Benchmark: what an ansible step costs beyond its tasks, side by side in one run. A runbook
of four steps, each a playbook of one debug task, run with the warm worker kept between runs
(the default), with a warm worker of the run's own (RUNBOOK_KEEP_WARM=0), through
ansible-runner (RUNBOOK_ANSIBLE=runner), and the same playbook run four times with plain
``ansible-playbook`` (the baseline); then each way's time per step: the first step (with a
worker of the run's own, it starts the worker) apart from the others.

Run: uv run python bench/ansible.py [--runs N]
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

STEPS = 4
PLAYBOOK = ("- name: One task\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - name: Say hello\n      ansible.builtin.debug: {msg: hello}\n")
WAYS = ("kept", "warm", "runner", "plain")
TITLES = {"kept": "runbook, warm worker kept between runs (the default)",
          "warm": "runbook, a warm worker of the run's own (`RUNBOOK_KEEP_WARM=0`)",
          "runner": "runbook, ansible-runner (`RUNBOOK_ANSIBLE=runner`)",
          "plain": f"{STEPS} plain `ansible-playbook` runs (baseline)"}
RATIO_TARGET = 0.5  # the warm runbook against the plain runs
STEP_TARGET = 0.1  # seconds per warm step after the first


class StepTimer(NullReporter):
    """Each step's wall time, from its start to its end as the executor reports them."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.took: list[float] = []

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        self.started[step_id] = time.perf_counter()

    def step_finished(self, step_id: str, name: str, status: str, message: str,
                      seconds: float) -> None:
        started = self.started.pop(step_id, None)
        if started is not None:
            self.took.append(time.perf_counter() - started)


def write_files(work: Path) -> tuple[Path, Path, Path]:
    playbook = work / "hello.yml"
    playbook.write_text(PLAYBOOK)
    inventory = work / "hosts.ini"  # what the engine gives a step without an inventory
    inventory.write_text(f"localhost ansible_connection=local "
                         f"ansible_python_interpreter={sys.executable}\n")
    book = work / "four.yaml"
    steps = "".join(f"  - id: hello-{n}\n    ansible: {{playbook: {playbook}}}\n"
                    for n in range(1, STEPS + 1))
    book.write_text("apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: four}\n"
                    "steps:\n" + steps)
    return playbook, inventory, book


def plain(playbook: Path, inventory: Path, work: Path) -> float:
    """Four ``ansible-playbook`` processes one after the other, as a shell script would."""
    ansible = Path(sys.executable).parent / "ansible-playbook"
    env = {**os.environ, "ANSIBLE_HOME": str(work / ".ansible"),
           "ANSIBLE_LOCAL_TEMP": str(work / ".ansible" / "tmp")}
    t0 = time.perf_counter()
    for _ in range(STEPS):
        subprocess.run([str(ansible), "-i", str(inventory), str(playbook)], check=True,
                       capture_output=True, env=env, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def runbook(book: Path, mode: str) -> tuple[float, list[float]]:
    """The four-step runbook's wall time and its steps' times, in order."""
    os.environ["RUNBOOK_ANSIBLE"] = "runner" if mode == "runner" else "warm"
    os.environ["RUNBOOK_KEEP_WARM"] = "0" if mode == "warm" else "600"
    timer = StepTimer()
    t0 = time.perf_counter()
    done = api.run(runbook=str(book), params={}, reporter=timer)
    total = time.perf_counter() - t0
    assert done.status == "done", done.message
    assert len(timer.took) == STEPS, timer.took
    return total, timer.took


def seconds(value: float) -> str:
    return f"{value:.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    totals: dict[str, list[float]] = {way: [] for way in WAYS}
    first: dict[str, list[float]] = {"kept": [], "warm": [], "runner": []}
    later: dict[str, list[float]] = {"kept": [], "warm": [], "runner": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["RUNBOOK_HOME"] = str(work / "state")
        os.chdir(work)
        playbook, inventory, book = write_files(work)
        for n in range(args.runs):
            order = WAYS[n % len(WAYS):] + WAYS[:n % len(WAYS)]  # no way always goes first
            print(f"run {n + 1} of {args.runs}: {', '.join(order)}", file=sys.stderr)
            for way in order:
                if way == "plain":
                    totals[way].append(plain(playbook, inventory, work))
                    continue
                total, steps = runbook(book, way)
                totals[way].append(total)
                first[way].append(steps[0])
                later[way].extend(steps[1:])
    med = {way: statistics.median(values) for way, values in totals.items()}
    print("```bash\nuv run python bench/ansible.py " + " ".join(sys.argv[1:]) + "\n```\n")
    print(f"Median of {args.runs}; each playbook is one `ansible.builtin.debug` task on "
          "localhost, no facts gathered.\n")
    print(f"| way | {STEPS} one-task playbooks | ÷ plain |\n|---|---|---|")
    for way in ("plain", "kept", "warm", "runner"):
        print(f"| {TITLES[way]} | {seconds(med[way])} | {med[way] / med['plain']:.2f}× |")
    for way in ("kept", "warm"):
        ratio = med[way] / med["plain"]
        print(f"\ntarget: {way} ≤ {RATIO_TARGET}× plain: {ratio:.2f}× — "
              f"{'met' if ratio <= RATIO_TARGET else 'not met'}")
    per_plain = med["plain"] / STEPS
    ways = ("kept", "warm", "runner")
    print("\n| per ansible step (one debug task) | kept worker | worker of the run's own "
          "| ansible-runner |\n|---|---|---|---|")
    print("| first step of a run (a worker of the run's own starts then) | "
          + " | ".join(seconds(statistics.median(first[m])) for m in ways) + " |")
    print(f"| each step after the first (median of {len(later['warm'])}) | "
          + " | ".join(seconds(statistics.median(later[m])) for m in ways) + " |")
    print("| the worker's start (first step less a later step's median) | | "
          f"{seconds(statistics.median(first['warm']) - statistics.median(later['warm']))} "
          "| |")
    print(f"| one plain `ansible-playbook` run, for comparison | {seconds(per_plain)} "
          f"| {seconds(per_plain)} | {seconds(per_plain)} |")
    step = statistics.median(later["warm"])
    print(f"\ntarget: warm ≤ {STEP_TARGET} s per step after the first: {step:.3f} s — "
          f"{'met' if step <= STEP_TARGET else 'not met'}")


if __name__ == "__main__":
    main()
