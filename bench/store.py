"""Benchmarks of the state store at scale. Run: uv run python bench/store.py [--runs 100000]
[--baseline-rev REV] [--dir DIR] [--postgres DSN]

Prints a markdown table: ``audit verify`` on a journal of RUNS runs (21 records each) with
its time and peak memory, a no-op step on disk, and ``status RUN`` / ``audit export`` of one
run among them. The store is filled in bulk with records hashed and chained by the engine's
own ``engine.store.chain`` (a ``runbook run`` per run would take hours), then one real run is
made with ``api.run``. Baselines, side by side: verify as it read the journal before (the
whole journal as a list), the one-run journal query in the form that served one run and all
runs, and with ``--baseline-rev`` the no-op step of that revision of the engine (a git
worktree).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.store import open_store  # noqa: E402
from engine.store.chain import GENESIS, dumps, record_hash  # noqa: E402
from engine.system.identity import origin  # noqa: E402

HEADER = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: bench}\n"
STEPS = 17  # with run-start, lock, run-status and unlock: 21 journal records a run
BATCH = 2000  # runs a transaction


class Chain:
    """Journal rows hashed and linked as the store appends them."""

    def __init__(self) -> None:
        self.seq, self.prev = 0, GENESIS
        self.who = origin()
        self.rows: list[tuple[Any, ...]] = []

    def append(self, at: str, run_id: str, kind: str, data: dict[str, Any]) -> None:
        data = {**data, **self.who}
        self.seq += 1
        digest = record_hash(self.prev, self.seq, at, run_id, kind, data)
        self.rows.append((self.seq, at, run_id, kind, dumps(data), self.prev, digest))
        self.prev = digest


Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def batches(runs: int, chain: Chain) -> Iterator[Rows]:
    """The rows of the runs, steps and journal tables, BATCH runs at a time."""
    for first in range(0, runs, BATCH):
        chain.rows = []
        run_rows: list[tuple[Any, ...]] = []
        step_rows: list[tuple[Any, ...]] = []
        for n in range(first, min(first + BATCH, runs)):
            run_id = f"20250101-{n:06d}-bench"
            at = f"2025-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000+00:00"
            run_rows.append((run_id, "bench", "/x/bench.yaml", "a" * 64, None, "b" * 64,
                             dumps({"n": n}), "ann", at, "c" * 64, "done", at, "", None,
                             "qa", 1))
            chain.append(at, run_id, "run-start",
                         {"runbook": "bench", "runbook_sha": "a" * 64,
                          "inventory_sha": "b" * 64, "params": {"n": n}, "user": "ann",
                          "plan_hash": "c" * 64, "lock": "qa"})
            chain.append(at, run_id, "lock", {"env": "qa", "user": "ann"})
            for s in range(STEPS):
                step_rows.append((run_id, f"s{s}", "ok", 1, at, at, "f" * 64,
                                  dumps({"n": s}), "", 1, s + 1))
                chain.append(at, run_id, "step",
                             {"step": f"s{s}", "status": "ok", "attempts": 1,
                              "fingerprint": "f" * 64, "error": "",
                              "result_sha256": "0" * 64})
            chain.append(at, run_id, "run-status", {"status": "done", "message": ""})
            chain.append(at, run_id, "unlock", {"env": "qa", "by": "", "reason": "run done"})
        yield run_rows, step_rows, chain.rows


TABLES = (("runs", 16), ("steps", 11), ("journal", 7))


def build(location: str, runs: int) -> int:
    """Fill a new store with ``runs`` ended runs; the number of journal records."""
    chain = Chain()
    with open_store(location) as store:
        conn = store._db  # type: ignore[attr-defined]
        for rows in batches(runs, chain):
            with store._tx():  # type: ignore[attr-defined]
                for (table, width), table_rows in zip(TABLES, rows, strict=True):
                    if location.startswith("postgresql://"):
                        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                            for row in table_rows:
                                copy.write_row(row)
                    else:
                        conn.executemany(f"INSERT INTO {table} VALUES "
                                         f"({', '.join('?' * width)})", table_rows)
    return chain.seq


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident memory (MB) and stdout of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    assert proc.returncode in (0, 1), out
    return seconds, usage.ru_maxrss / 1024, out


OLD_VERIFY = """
import sys
sys.path.insert(0, sys.argv[1])
from engine.trust.audit import check
from engine.store import open_store
with open_store(readonly=True) as store:
    records = store.journal()  # as audit verify read it before: the whole journal at once
    verdict = check(records)
print(verdict.records, verdict.intact)
"""


def bench_verify(location: str, records: int, runs: int, baseline: bool,
                 store_name: str = "SQLite") -> list[tuple[str, str]]:
    env = {**os.environ, "RUNBOOK_STATE": location}
    seconds, rss, out = measured([sys.executable, "-m", "engine", "audit", "verify"], env)
    assert f"journal intact: {records} records" in out, out
    label = f"audit verify, {store_name}, {runs:,} runs ({records:,} records)"
    rows = [(label, f"{seconds:.1f} s, peak RSS {rss:.0f} MB")]
    if baseline:
        old_s, old_rss, out = measured([sys.executable, "-c", OLD_VERIFY, str(REPO)], env)
        assert out.split() == [str(records), "True"], out
        rows.append((f"{label}, whole journal read as a list (before)",
                     f"{old_s:.1f} s, peak RSS {old_rss:.0f} MB; streamed: "
                     f"{rss / old_rss:.3f}× the memory, {seconds / old_s:.2f}× the time"))
    return rows


def one_real_run(work: Path, db: Path) -> str:
    from engine import api

    book = work / "real.yaml"
    book.write_text(HEADER + "steps:\n" + "".join(
        f"  - id: s{i}\n    set: {{n: {i}}}\n" for i in range(5)))
    result = api.run(runbook=str(book), params={}, state=str(db))
    assert result.status == "done"
    return result.run_id


def median_of(argv: list[str], env: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        seconds, _, _ = measured(argv, env)
        samples.append(seconds)
    return statistics.median(samples)


def bench_one_run(db: Path, run_id: str, runs: int, repeat: int) -> list[tuple[str, str]]:
    env = {**os.environ, "RUNBOOK_STATE": str(db)}
    helpt = median_of([sys.executable, "-m", "engine", "--help"], env, repeat)
    status = median_of([sys.executable, "-m", "engine", "status", run_id], env, repeat)
    export = median_of([sys.executable, "-m", "engine", "audit", "export", "--run", run_id],
                       env, repeat)
    indexed = "SELECT seq, at, run_id, kind, data, prev_hash, hash FROM journal " \
              "WHERE run_id = ? ORDER BY seq"
    old_form = indexed.replace("run_id = ?", "(CAST(? AS TEXT) IS NULL OR run_id = ?)")
    with open_store(str(db), readonly=True) as store:
        conn = store._db  # type: ignore[attr-defined]
        new_q = _timed_query(conn, indexed, (run_id,), repeat)
        old_q = _timed_query(conn, old_form, (run_id, run_id), max(1, repeat // 2))
        # What every open of a SQLite store does first (engine.store.sqlite._check).
        checked = _timed_query(conn, "PRAGMA quick_check(1)", (), 1)
    return [
        ("runbook --help (process start, for scale)", f"{helpt * 1000:.0f} ms"),
        (f"status RUN, {runs:,} runs in the store", f"{status * 1000:.0f} ms"),
        (f"audit export --run RUN, {runs:,} runs in the store", f"{export * 1000:.0f} ms"),
        ("of which: PRAGMA quick_check(1), the damaged-store check of every open",
         f"{checked * 1000:.0f} ms"),
        ("one run's journal: indexed query (now)", f"{new_q * 1000:.2f} ms"),
        ("one run's journal: `(CAST(? AS TEXT) IS NULL OR run_id = ?)` (before)",
         f"{old_q * 1000:.0f} ms; indexed: {new_q / old_q:.5f}× the time"),
    ]


def _timed_query(conn: Any, sql: str, params: tuple[str, ...], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        samples.append(time.perf_counter() - t0)
        assert rows
    return statistics.median(samples)


NOOP = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from engine import api
from engine.run.report import NullReporter

class Timer(NullReporter):
    marks = []
    def step_finished(self, *args, **kwargs):
        self.marks.append(time.perf_counter())

timer = Timer()
assert api.run(runbook=sys.argv[2], params={}, reporter=timer).status == "done"
print(json.dumps([b - a for a, b in zip(timer.marks, timer.marks[1:])]))
"""


def noop_step(root: Path, work: Path, steps: int, strace: bool) -> tuple[list[float], float]:
    """The gaps between consecutive no-op steps, and fdatasync/fsync calls a step (with
    strace; else 0)."""
    book = work / "noop.yaml"
    book.write_text(HEADER + "steps:\n" + "".join(
        f"  - id: s{i}\n    set: {{n: {i}}}\n" for i in range(steps)))
    state = work / f"noop-{root.name}"
    shutil.rmtree(state, ignore_errors=True)
    env = {**os.environ, "RUNBOOK_HOME": str(state)}
    env.pop("RUNBOOK_STATE", None)
    argv = [sys.executable, "-c", NOOP, str(root), str(book)]
    out = subprocess.run(argv, env=env, cwd=work, check=True, capture_output=True,
                         text=True).stdout
    gaps = json.loads(out)
    syncs = 0.0
    if strace:
        counts = []
        for n in (steps, 2 * steps):  # the difference leaves out what the run does once
            book.write_text(HEADER + "steps:\n" + "".join(
                f"  - id: s{i}\n    set: {{n: {i}}}\n" for i in range(n)))
            shutil.rmtree(state, ignore_errors=True)
            log = work / "strace.txt"
            subprocess.run(["strace", "-f", "-qq", "-c", "-o", str(log), "-e",
                            "trace=fsync,fdatasync", *argv], env=env, cwd=work, check=True,
                           capture_output=True)
            counts.append(sum(int(line.split()[3]) for line in log.read_text().splitlines()
                              if line.strip().endswith(("fsync", "fdatasync"))))
        syncs = (counts[1] - counts[0]) / steps
    return gaps, syncs


def bench_noop(work: Path, steps: int, baseline_rev: str | None) -> list[tuple[str, str]]:
    strace = shutil.which("strace") is not None
    gaps, syncs = noop_step(REPO, work, steps, strace)
    med, p95 = statistics.median(gaps), sorted(gaps)[int(len(gaps) * 0.95)]
    where = f"on disk ({work})"
    sync_text = f", {syncs:.2f} fsync a step" if strace else ""
    rows = [(f"no-op step with its checkpoint, {steps} steps, SQLite {where}",
             f"median {med * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms{sync_text}")]
    if baseline_rev:
        tree = work / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree),
                        baseline_rev], check=True, capture_output=True)
        try:
            old, old_syncs = noop_step(tree, work, steps, strace)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(tree)], check=True, capture_output=True)
        old_med, old_p95 = statistics.median(old), sorted(old)[int(len(old) * 0.95)]
        old_sync_text = f", {old_syncs:.2f} fsync a step" if strace else ""
        rows.append((f"same at {baseline_rev} (before)",
                     f"median {old_med * 1000:.2f} ms, p95 {old_p95 * 1000:.2f} ms"
                     f"{old_sync_text}; now {med / old_med:.2f}× the median"))
    return rows


def fsync_cost(work: Path) -> str:
    probe = work / "fsync-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT)
    samples = []
    try:
        for _ in range(200):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            samples.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        probe.unlink()
    return f"{statistics.median(samples) * 1000:.3f} ms"


def bench_postgres(dsn: str, runs: int, baseline: bool) -> list[tuple[str, str]]:
    rows = []
    with open_store(dsn) as store:
        records = store._one("SELECT COUNT(*) FROM journal")[0]  # type: ignore[attr-defined]
    if not records:
        t0 = time.perf_counter()
        records = build(dsn, runs)
        rows.append((f"filling the PostgreSQL store in bulk ({runs:,} runs)",
                     f"{time.perf_counter() - t0:.0f} s"))
    return rows + bench_verify(dsn, records, runs, baseline, "PostgreSQL")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=400, help="no-op steps in one run")
    parser.add_argument("--baseline-rev", help="also measure the no-op step at this revision")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip reading the whole journal as a list (GBs at 100k runs)")
    parser.add_argument("--dir", help="work here (on the disk to measure) instead of a "
                        "temporary folder; a store of the same size found there is reused")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", metavar="DSN", help="also verify a PostgreSQL store of "
                        "as many runs here (an empty database is filled; a filled one reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        cache = Path(args.dir) / f"store-{args.runs}.db" if args.dir else work / "store.db"
        os.environ["RUNBOOK_HOME"] = str(work / "home")
        os.chdir(work)
        rows = [("fdatasync of 4 KB on this disk (median)", fsync_cost(work))]
        rows += bench_noop(work, args.steps, args.baseline_rev)
        if not cache.exists():
            t0 = time.perf_counter()
            records = build(str(cache), args.runs)
            rows.append((f"filling the store in bulk ({args.runs:,} runs)",
                         f"{time.perf_counter() - t0:.0f} s"))
        with open_store(str(cache), readonly=True) as store:
            records = store._one("SELECT COUNT(*) FROM journal")[0]  # type: ignore[attr-defined]
        rows += bench_verify(str(cache), records, args.runs, not args.no_baseline)
        run_id = one_real_run(work, cache)
        rows += bench_one_run(cache, run_id, args.runs, args.repeat)
        if args.postgres:
            rows += bench_postgres(args.postgres, args.runs, not args.no_baseline)
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
