"""Benchmark: 50 concurrent runs on 50 different environments against one PostgreSQL state
store — do all proceed, does any wait on another's lock — and how long taking a lock takes.

Run: uv run python bench/locks.py   (starts its own PostgreSQL unless
RUNBOOK_TEST_POSTGRES_DSN names one)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.store import LockRecord, RunRecord, open_store  # noqa: E402

RUNS = 50
BOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: bench-lock, lock: "{{ params.env }}"}
params:
  env: {type: string, required: true}
steps:
  - id: work
    wait: {seconds: 2}
"""


def postgres() -> tuple[str, str | None]:
    given = os.environ.get("RUNBOOK_TEST_POSTGRES_DSN")
    if given:
        return given, None
    folder = tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp")
    dsn = subprocess.run([str(REPO / "scripts" / "postgres.sh"), "start", folder],
                         check=True, capture_output=True, text=True).stdout.strip()
    return dsn, folder


def fresh_database(admin_dsn: str) -> str:
    import psycopg

    name = f"bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def concurrent_runs(dsn: str, work: Path) -> list[str]:
    book = work / "book.yaml"
    book.write_text(BOOK)
    env = {**os.environ, "RUNBOOK_STATE": dsn, "RUNBOOK_HOME": str(work / "home")}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "engine", "run", str(book), "--env",
                               f"env-{i:02d}", "--output", "json"], env=env, cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(RUNS)]
    codes = [p.wait(timeout=600) for p in procs]
    wall = time.perf_counter() - t0
    with open_store(dsn) as store:
        runs = store.list_runs(limit=RUNS + 10)
    return [f"{RUNS} `runbook run` processes, one environment each, started together",
            f"exit codes: {dict(sorted((c, codes.count(c)) for c in set(codes)))} "
            f"(4 would be a run blocked by a lock)",
            f"runs recorded done: {sum(r.status == 'done' for r in runs)} of {RUNS}",
            f"wall time {wall:.1f} s for runs whose only step waits 2 s (2 cores: most of "
            "it is starting 50 Python processes)"]


def lock_latency(location: str, label: str) -> list[str]:
    samples: list[float] = []
    with open_store(location) as store:
        for i in range(RUNS):
            store.create_run(RunRecord(id=f"{label}-{i}", runbook="b", path="p",
                                       runbook_sha="s", inventory=None, inventory_sha="i",
                                       params={}, user="u", started_at="t", plan_hash="h"))
        for i in range(200):
            t0 = time.perf_counter()
            assert store.acquire_lock(LockRecord(f"{label}-solo-{i}", f"{label}-0", "u",
                                                 "t")) is None
            samples.append(time.perf_counter() - t0)
    threaded: list[float] = []

    def one(i: int) -> None:
        with open_store(location) as mine:
            t0 = time.perf_counter()
            assert mine.acquire_lock(LockRecord(f"{label}-par-{i}", f"{label}-{i}", "u",
                                                "t")) is None
            threaded.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s, p = sorted(samples), sorted(threaded)
    return [f"{label}: take a lock, one at a time: median {statistics.median(s) * 1000:.2f} ms, "
            f"p95 {s[int(len(s) * 0.95)] * 1000:.2f} ms",
            f"{label}: {RUNS} locks on {RUNS} environments taken at once from {RUNS} "
            f"connections: median {statistics.median(p) * 1000:.1f} ms, "
            f"max {p[-1] * 1000:.1f} ms"]


def main() -> None:
    admin, folder = postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            lines = concurrent_runs(fresh_database(admin), work)
            lines += lock_latency(fresh_database(admin), "postgres")
            lines += lock_latency(str(work / "state.db"), "sqlite")
    finally:
        if folder:
            subprocess.run([str(REPO / "scripts" / "postgres.sh"), "stop", folder], check=False)
    for line in lines:
        print(f"- {line}")


if __name__ == "__main__":
    main()
