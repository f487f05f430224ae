"""Benchmark: the bytes one run leaves in the state store, for a promotion (uat1 → staging,
its checklist attested by two people with signed approvals), a rollback of live and a hotfix
(emergency CAB approval, verification of staging, live), each run in the sandbox through the
command line and measured in a store of its own: the bytes of each table's rows (journal
records, step rows, approvals, ...) and the growth of the SQLite file; apart, the rows a run
shares with every run that starts with the same people's keys (the keyrings table).

Run: uv run --extra sandbox python bench/records.py [--json FILE]
     (from a checkout of another revision too, to compare: the figures go to bench/README)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import sandbox  # noqa: E402

TABLES = ("runs", "steps", "journal", "approvals", "signatures", "history", "plans",
          "plan_approval_uses")
# Kept once for every run that starts with the same set of people's keys: the first run of a
# store pays for it, the next ones do not. Counted apart from the run's rows.
SHARED = ("keyrings",)
REASON = "CVE-2026-1234 in session handling"


def cli(env: dict[str, str], *args: str, expect: int = 0) -> str:
    done = subprocess.run([sys.executable, "-m", "engine", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)
    if done.returncode != expect:
        raise SystemExit(f"runbook {' '.join(args)}: exit {done.returncode}, not {expect}\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout


def promote(env: dict[str, str], keys: Path) -> None:
    run_id = cli(env, "run", "promote", "--from", "uat1", "--to", "staging", expect=3).split()[1]
    cli(env, "approve", run_id, "--step", "checklist", "--by", "alice", "--item", "uat-signoff",
        "--item", "acceptance-criteria", "--item", "release-notes", "--sign", str(keys / "alice"))
    cli(env, "approve", run_id, "--step", "checklist", "--by", "bob", "--item", "documentation",
        "--item", "runbook-reviewed", "--item", "rollback-plan", "--note",
        "rollback plan in CHG-1042", "--sign", str(keys / "bob"))
    cli(env, "resume", run_id)


def rollback(env: dict[str, str], keys: Path) -> None:
    cli(env, "run", "rollback", "--env", "live")


def hotfix(env: dict[str, str], keys: Path) -> None:
    run_id = cli(env, "run", "hotfix", "--tag", "1.4.3", "--reason", REASON,
                 "--verify-minutes", "1", expect=3).split()[1]
    cli(env, "resume", run_id, expect=3)
    cli(env, "approve", run_id, "--gate", "cab", "--by", "carol", "--ticket", "EC-77",
        "--sign", str(keys / "carol"))
    cli(env, "resume", run_id)


RUNBOOKS = {"promote": promote, "rollback": rollback, "hotfix": hotfix}


def row_bytes(db: sqlite3.Connection, table: str) -> int:
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    if not columns:  # a store of a release before the table
        return 0
    total = "+".join(f"COALESCE(LENGTH(CAST({c} AS BLOB)), 0)" for c in columns)
    return int(db.execute(f"SELECT COALESCE(SUM({total}), 0) FROM {table}").fetchone()[0])


def measure(name: str, work: Path) -> dict[str, Any]:
    home = work / name
    info = sandbox.up(work / "sandbox", rollout_delay=0.2, operator="operator", clock=True)
    sandbox.reset(info)
    env = {**os.environ, **sandbox.environment(info), "RUNBOOK_HOME": str(home),
           "RUNBOOK_USER": "operator"}
    cli(env, "store", "migrate")  # an empty store, migrated: what the run adds is measured
    state = home / "state.db"
    empty = state.stat().st_size
    RUNBOOKS[name](env, work / "sandbox" / "keys")
    db = sqlite3.connect(state)
    tables = {t: row_bytes(db, t) for t in TABLES}
    shared = {t: row_bytes(db, t) for t in SHARED}
    records = db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {"tables": tables, "rows": sum(tables.values()), "shared": shared,
            "journal_records": records,
            "file_growth": state.stat().st_size - empty}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--json", help="write the figures to this file too")
    parser.add_argument("--dir", help="keep the stores in this new folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runbook-bench-records-") as tmp:
        work = Path(args.dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            figures = {name: measure(name, work) for name in RUNBOOKS}
        finally:
            sandbox.down(work / "sandbox")
    print(f"{'table':<20}" + "".join(f"{name:>12}" for name in figures))
    for table in TABLES:
        print(f"{table:<20}" + "".join(f"{f['tables'][table]:>12,}" for f in figures.values()))
    for what in ("rows", "journal_records", "file_growth"):
        print(f"{what:<20}" + "".join(f"{f[what]:>12,}" for f in figures.values()))
    for table in SHARED:
        print(f"{table + ' (shared)':<20}" + "".join(
            f"{f.get('shared', {}).get(table, 0):>12,}" for f in figures.values()))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
