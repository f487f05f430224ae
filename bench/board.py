"""Benchmark of ``runbook board``. Run: uv run python bench/board.py [--envs 200]
[--history 10000] [--runs 2000] [--waiting 20] [--repeat 5] [--no-sandbox] [--postgres DSN]

Prints a markdown table of median times:

- the sandbox's seven environments: ``api.board`` as ``runbook board`` calls it (every overlay
  rendered and every deployment read from the emulated cluster, at once), then the HTML page;
- ENVS environments with HISTORY history records, RUNS runs (WAITING of them waiting at a
  checklist with approvals given) in a SQLite store, and in PostgreSQL with ``--postgres``:
  ``api.board`` reading the store only (``cluster=False``: no cluster has 200 namespaces
  here), the text and the HTML page.

The store is filled in bulk with SQL (the board reads history, runs, steps, approvals and
locks, not the journal), after the engine created its schema.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import api  # noqa: E402
from engine.store import open_store  # noqa: E402
from engine.views import present_board  # noqa: E402


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def inventory(folder: Path, envs: int) -> Path:
    names = [f"env{i:03d}" for i in range(envs)]
    lines = ["apiVersion: runbook/v1", "kind: Inventory", "metadata: {name: many}",
             "environments:"]
    for i, name in enumerate(names):
        lines += [f"  {name}:", f"    stage: {i // 10 + 1}", "    context: bench",
                  f"    namespace: ns-{name}", f"    deployment: {name}-api",
                  "    container: api", f"    overlay: k8s/overlays/{name}"]
    lines.append("promotions:")
    lines += [f"  {a}: [{b}]" for a, b in itertools.pairwise(names)]
    path = folder / "many.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class _Placeholders:
    """A psycopg connection taking the SQLite statements below (``?`` placeholders)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def executemany(self, sql: str, rows: list[Any]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def fill(state: str, envs: int, history: int, runs: int, waiting: int) -> None:
    with open_store(state):
        pass  # the engine's schema
    rng = random.Random(7)
    names = [f"env{i:03d}" for i in range(envs)]
    db: Any
    if state.startswith("postgresql://"):
        import psycopg

        db = _Placeholders(psycopg.connect(state))
    else:
        db = sqlite3.connect(state)
    hist = []
    for n in range(history):
        env = names[n % envs]
        at = f"2026-{1 + n * 11 // history:02d}-{1 + n % 28:02d}T10:{n % 60:02d}:00+00:00"
        hist.append((at, f"r{n}", "dave", rng.choice(("promotion", "hotfix", "rollback",
                                                     "db-rollback")), env,
                     json.dumps({"image": f"quikapp/api:{env}-{n}", "digest": f"sha256:{n:064x}"})))
    db.executemany("INSERT INTO history (at, run_id, run_user, kind, env, data) "
                   "VALUES (?, ?, ?, ?, ?, ?)", hist)
    items = {f"item{i}": {"kind": "attest", "text": f"Item {i}", "passed": False}
             for i in range(6)}
    items["cab"] = {"kind": "approval", "gate": "cab", "quorum": 2, "role": "cab",
                    "required_ticket": True, "passed": False, "approvals": []}
    run_rows, step_rows, approval_rows = [], [], []
    for n in range(runs):
        env = names[n % envs]
        run_id = f"2026{n:06d}-bench"
        status = "waiting" if n >= runs - waiting else rng.choice(("done", "failed", "done"))
        run_rows.append((run_id, "promote", "/bench/promote.yaml", "0" * 64, None, "0" * 64,
                         json.dumps({"from": "a", "to": env}), "dave",
                         f"2026-11-{1 + n * 25 // runs:02d}T{n % 24:02d}:00:00+00:00",
                         "0" * 64, status, None, "", env, 1))
        if status == "waiting":
            step_rows.append((run_id, "checklist", "waiting", 1, "2026-11-26T10:00:00+00:00",
                              None, "f", json.dumps({"items": items}), "", 1, 1))
            approval_rows.append((run_id, "", "checklist", "item0", "alice",
                                  "2026-11-26T11:00:00+00:00", "", "CHG-1"))
    db.executemany("INSERT INTO runs (id, runbook, path, runbook_sha, inventory, inventory_sha, "
                   "params, run_user, started_at, plan_hash, status, ended_at, message, "
                   "lock_env, schema_version) VALUES (" + ", ".join("?" * 15) + ")", run_rows)
    db.executemany("INSERT INTO steps (run_id, step_id, status, attempts, started_at, ended_at, "
                   "fingerprint, result, error, schema_version, seq) VALUES ("
                   + ", ".join("?" * 11) + ")", step_rows)
    db.executemany("INSERT INTO approvals (run_id, plan_hash, step_id, item, by_name, at, "
                   "note, ticket) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", approval_rows)
    db.executemany("INSERT INTO locks (env, run_id, run_user, since) VALUES (?, ?, ?, ?)",
                   [(r[13], r[0], "dave", r[8]) for r in run_rows if r[10] == "waiting"])
    db.commit()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=200)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--postgres", metavar="DSN", help="an empty PostgreSQL database: the "
                        "many-environment board is measured on it too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="runbook-bench-board-") as tmp:
        folder = Path(tmp)
        os.environ["RUNBOOK_HOME"] = str(folder / "home")
        if not args.no_sandbox:
            from engine import sandbox

            info = sandbox.up(folder / "sandbox", rollout_delay=0.1)
            try:
                saved = dict(os.environ)
                os.environ.update(sandbox.environment(info))
                os.environ["RUNBOOK_STATE"] = str(folder / "sandbox-state.db")
                ms, board = median_ms(lambda: api.board(inventory="quikapp"), args.repeat)
                rows.append((f"{len(board.rows)} sandbox environments: api.board (cluster and "
                             "store)", ms))
                ms, _ = median_ms(lambda: present_board.board_html(board), args.repeat)
                rows.append(("  their HTML page", ms))
            finally:
                os.environ.clear()
                os.environ.update(saved)
                sandbox.down(folder / "sandbox")
        inv = str(inventory(folder, args.envs))
        stores = [("SQLite", str(folder / "many.db"))]
        if args.postgres:
            stores.append(("PostgreSQL", args.postgres))
        for kind, state in stores:
            os.environ["RUNBOOK_STATE"] = state
            fill(state, args.envs, args.history, args.runs, args.waiting)
            ms, found = median_ms(lambda: api.board(inventory=inv, cluster=False), args.repeat)
            board = found
            rows.append((f"{args.envs} environments, {args.history:,} history records, "
                         f"{args.runs:,} runs ({len(board.waiting)} waiting), {kind}: "
                         "api.board, store only", ms))
            ms, _ = median_ms(lambda b=board: present_board.board_text(b), args.repeat)
            rows.append(("  text", ms))
            ms, page = median_ms(lambda b=board: present_board.board_html(b), args.repeat)
            rows.append((f"  HTML page ({len(page) // 1024} KB)", ms))
    print("| measure | median |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} ms |")


if __name__ == "__main__":
    main()
