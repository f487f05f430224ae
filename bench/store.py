"""Benchmarks of the state store at scale. Run:

    uv run python bench/store.py --runs 10000 100000 1000000 [--dir DIR] [--postgres DSN]

Fills a store of each size in bulk, with records hashed and chained by the engine's own
``engine.store.chain`` and step results hashed as the journal records them (a ``runbook run``
per run would take days), checks that ``audit verify`` finds the journal intact, makes one
real run among them, then prints each read command as a process (``status``, ``status RUN``,
``history --env``, ``lock list``, ``board --no-cluster``, ``audit export --run``) and a no-op
``runbook run``, side by side with the same on an empty store, with the bytes a run takes;
then ``audit verify`` from where the full one ended: after the real run, and after 50 more
runs (1,050 records) added in bulk. With ``--postgres``, the same on a PostgreSQL store of the
largest size (an empty database is filled; a filled one reused). ``--dir`` keeps the filled
stores for the next run; ``--skip-full`` does not verify those found there in full again.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.store import open_store  # noqa: E402
from engine.store.chain import GENESIS, compact, dumps, record_hash  # noqa: E402
from engine.store.records import step_row_sha256  # noqa: E402
from engine.system.identity import origin  # noqa: E402

HEADER = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {name: bench}\n"
STEPS = 17  # with run-start, lock, run-status and unlock: 21 journal records a run
BATCH = 2000  # runs a transaction
NEW_RUNS = 50  # runs added after a verification: 1,050 records for the next one to check
# Each step's result as the steps table holds it, and its row's hash as the journal records it.
RESULTS = [compact({"n": s}) for s in range(STEPS)]
ROW_SHA = [step_row_sha256("ok", 1, "f" * 64, "", text) for text in RESULTS]


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
        # The hash it follows is the row before's, kept there ('' here), as the store does.
        self.rows.append((self.seq, at, run_id, kind, dumps(data), "", digest))
        self.prev = digest


Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def batches(runs: int, chain: Chain, start: int = 0) -> Iterator[Rows]:
    """The rows of the runs, steps and journal tables, BATCH runs at a time."""
    for first in range(start, runs, BATCH):
        chain.rows = []
        run_rows: list[tuple[Any, ...]] = []
        step_rows: list[tuple[Any, ...]] = []
        for n in range(first, min(first + BATCH, runs)):
            run_id = f"20250101-{n:06d}-bench"
            at = f"2025-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000+00:00"
            run_rows.append((run_id, "bench", "/x/bench.yaml", "a" * 64, None, "b" * 64,
                             compact({"n": n}), "ann", at, "c" * 64, "done", at, "", None,
                             "qa", 1))
            chain.append(at, run_id, "run-start",
                         {"runbook": "bench", "runbook_sha": "a" * 64,
                          "inventory_sha": "b" * 64, "params": {"n": n}, "user": "ann",
                          "plan_hash": "c" * 64, "lock": "qa"})
            chain.append(at, run_id, "lock", {"env": "qa", "user": "ann"})
            for s in range(STEPS):
                step_rows.append((run_id, f"s{s}", "ok", 1, at, at, "f" * 64,
                                  RESULTS[s], "", 1, s + 1))
                chain.append(at, run_id, "step",
                             {"step": f"s{s}", "status": "ok", "row_sha256": ROW_SHA[s]})
            chain.append(at, run_id, "run-status", {"status": "done", "message": ""})
            chain.append(at, run_id, "unlock", {"env": "qa", "by": "", "reason": "run done"})
        yield run_rows, step_rows, chain.rows


TABLES = (("runs", 16), ("steps", 11), ("journal", 7))


def build(location: str, runs: int) -> int:
    """Fill a new store with ``runs`` ended runs; the number of journal records."""
    chain = Chain()
    with open_store(location) as store:
        for rows in batches(runs, chain):
            _insert(store, location, rows)
        if runs:  # the newest run of the lock, as a run's start records it
            last = next(iter(batches(runs, Chain(), start=runs - 1)))[0][-1]
            store._execute("INSERT INTO newest_runs (lock_env, started_at, run_id) "  # type: ignore[attr-defined]
                           "VALUES (?, ?, ?)", ("qa", last[8], last[0]))
    return chain.seq


def append(location: str, count: int) -> None:
    """``count`` more ended runs after the store's last journal record, made as ``build``
    makes them."""
    with open_store(location) as store:
        first = store._one("SELECT COUNT(*) FROM runs")[0]  # type: ignore[attr-defined]
        chain = Chain()
        chain.seq, chain.prev = store.journal_head() or (0, GENESIS)
        for rows in batches(first + count, chain, start=first):
            _insert(store, location, rows)


def _insert(store: Any, location: str, rows: Rows) -> None:
    conn = store._db
    with store._tx():
        for (table, width), table_rows in zip(TABLES, rows, strict=True):
            if location.startswith("postgresql://"):
                with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)
            else:
                conn.executemany(f"INSERT INTO {table} VALUES "
                                 f"({', '.join('?' * width)})", table_rows)


# Started by a small process of its own: a child's peak resident memory counts the pages of the
# process it was forked from (here, the bench holding a million runs' rows), so the command is
# spawned by this one and its own peak read back from it.
PEAK = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(argv: list[str], env: dict[str, str], *, peak: bool = False
             ) -> tuple[float, float, str]:
    """Wall seconds, peak resident memory (MB, with ``peak``; else 0) and stdout of one
    process."""
    with tempfile.NamedTemporaryFile(mode="r") as kb:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PEAK, kb.name, *argv] if peak else argv,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        seconds = time.perf_counter() - t0
        assert proc.returncode in (0, 1), proc.stdout
        return seconds, int(kb.read() or 0) / 1024 if peak else 0.0, proc.stdout


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
    seconds, rss, out = measured([sys.executable, "-m", "engine", "audit", "verify", "--full"],
                                 env, peak=True)
    assert f"journal intact: {records} records" in out, out
    label = f"audit verify --full, {store_name}, {runs:,} runs ({records:,} records)"
    rows = [(label, f"{seconds:.1f} s, peak RSS {rss:.0f} MB")]
    if baseline:
        old_s, old_rss, out = measured([sys.executable, "-c", OLD_VERIFY, str(REPO)], env,
                                       peak=True)
        assert out.split() == [str(records), "True"], out
        rows.append((f"{label}, whole journal read as a list (before)",
                     f"{old_s:.1f} s, peak RSS {old_rss:.0f} MB; streamed: "
                     f"{rss / old_rss:.3f}× the memory, {seconds / old_s:.2f}× the time"))
    return rows


def one_real_run(work: Path, db: str) -> str:
    from engine import api

    book = work / "real.yaml"
    book.write_text(HEADER + "steps:\n" + "".join(
        f"  - id: s{i}\n    set: {{n: {i}}}\n" for i in range(5)))
    result = api.run(runbook=str(book), params={}, state=db)
    assert result.status == "done"
    return result.run_id


def median_of(argv: list[str], env: dict[str, str], repeat: int) -> float:
    measured(argv, env)  # not counted: the first run reads the engine's files from disk
    samples = []
    for _ in range(repeat):
        seconds, _, _ = measured(argv, env)
        samples.append(seconds)
    return statistics.median(samples)




def read_commands(run_id: str, inventory: Path, book: Path) -> dict[str, list[str]]:
    return {
        "status": ["status"],
        "status RUN": ["status", run_id],
        "history --env qa": ["history", "--env", "qa"],
        "lock list": ["lock", "list"],
        "board --no-cluster": ["board", "--no-cluster", "--inventory", str(inventory)],
        "audit export --run RUN": ["audit", "export", "--run", run_id],
        "run (a no-op runbook)": ["run", str(book)],
    }


def bench_reads(location: str, work: Path, repeat: int) -> tuple[dict[str, float], str]:
    """Each read command (and a no-op run) as a process on the store at ``location``: the
    median seconds of each; and the id of the real run made there."""
    book = work / "noop.yaml"
    book.write_text(HEADER + "steps:\n  - id: s0\n    set: {n: 0}\n")
    inventory = REPO / "inventories" / "quikapp.yaml"  # read from the store alone here
    run_id = one_real_run(work, location)
    env = {**os.environ, "RUNBOOK_STATE": location, "RUNBOOK_INVENTORY": str(inventory),
           "RUNBOOK_USER": "alice"}
    found = {}
    for name, args in read_commands(run_id, inventory, book).items():
        found[name] = median_of([sys.executable, "-m", "engine", *args], env, repeat)
    return found, run_id


def bench_size(location: str, runs: int, work: Path, repeat: int, label: str,
               skip_full: bool = False) -> tuple[dict[str, float], list[tuple[str, str]]]:
    rows: list[tuple[str, str]] = []
    exists = location.startswith("postgresql://") or Path(location).exists()
    records = 0
    if exists:
        with open_store(location) as store:  # made if need be (a new PostgreSQL database)
            records = store._one("SELECT COUNT(*) FROM journal")[0]  # type: ignore[attr-defined]
    if runs and not records:
        t0 = time.perf_counter()
        records = build(location, runs)
        rows.append((f"filling {label} in bulk ({runs:,} runs)",
                     f"{time.perf_counter() - t0:.0f} s"))
    if runs and not skip_full:
        rows += bench_verify(location, records, runs, False, label)
        if not location.startswith("postgresql://"):
            size = Path(location).stat().st_size
            rows.append((f"bytes a run takes, {label}, {runs:,} runs",
                         f"{size / runs / 1024:.1f} KB ({size / 2**30:.2f} GB)"))
    reads, _ = bench_reads(location, work, repeat)
    if runs:
        # The runs just made came after the records the full verification found intact.
        env = {**os.environ, "RUNBOOK_STATE": location}
        seconds, rss, out = measured([sys.executable, "-m", "engine", "audit", "verify",
                                      "--output", "json"], env, peak=True)
        found = json.loads(out)
        assert found["intact"] and found["verified_before"], out
        rows.append((f"audit verify (from the last one), {label}, {runs:,} runs: "
                     f"{found['records'] - found['verified_before']} new records",
                     f"{seconds * 1000:.0f} ms, peak RSS {rss:.0f} MB"))
        append(location, NEW_RUNS)
        seconds, rss, out = measured([sys.executable, "-m", "engine", "audit", "verify",
                                      "--output", "json"], env, peak=True)
        found = json.loads(out)
        assert found["intact"] and found["verified_before"], out
        rows.append((f"audit verify (from the last one), {label}, {runs:,} runs: "
                     f"{found['records'] - found['verified_before']:,} new records "
                     f"({NEW_RUNS} runs)", f"{seconds * 1000:.0f} ms, peak RSS {rss:.0f} MB"))
    return reads, rows


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dir", help="work here (on the disk to measure) instead of a "
                        "temporary folder; a store of the same size found there is reused")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-full", action="store_true", help="no full verification of "
                        "stores found in --dir (filled and verified by an earlier run)")
    parser.add_argument("--postgres", metavar="DSN", help="also a PostgreSQL store of the "
                        "largest size (an empty database is filled; a filled one reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        os.environ["RUNBOOK_HOME"] = str(work / "home")
        os.chdir(work)
        notes: list[tuple[str, str]] = []
        columns = {"empty": bench_size(str(work / "empty.db"), 0, work, args.repeat,
                                       "SQLite")[0]}
        for runs in args.runs:
            cache = Path(args.dir) / f"store-{runs}.db" if args.dir else work / f"{runs}.db"
            reads, rows = bench_size(str(cache), runs, work, args.repeat, "SQLite",
                                     args.skip_full and cache.exists())
            columns[f"{runs:,} runs"] = reads
            notes += rows
        if args.postgres:
            reads, rows = bench_size(args.postgres, max(args.runs), work, args.repeat,
                                     "PostgreSQL")
            columns[f"PostgreSQL, {max(args.runs):,} runs"] = reads
            notes += rows
    empty = columns["empty"]
    names = list(empty)
    print(f"| command (a process, median of {args.repeat}) | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in names:
        cells = [f"{empty[name] * 1000:.0f} ms"]
        cells += [f"{c[name] * 1000:.0f} ms = {c[name] / empty[name]:.2f}×"
                  for key, c in columns.items() if key != "empty"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| measure | result |\n|---|---|")
    for name, value in notes:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
