"""The default state store: one SQLite file, written in short transactions.

Every write is a single transaction, so a process killed at any moment leaves either the
record before or the record after, never half of one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.store import ApprovalRecord, EventRecord, HistoryRecord, RunRecord, StepRecord
from engine.store.owner import is_alive

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, runbook TEXT NOT NULL, path TEXT NOT NULL, runbook_sha TEXT NOT NULL,
  inventory TEXT, inventory_sha TEXT NOT NULL, params TEXT NOT NULL, user TEXT NOT NULL,
  started_at TEXT NOT NULL, plan_hash TEXT NOT NULL, status TEXT NOT NULL, ended_at TEXT,
  message TEXT NOT NULL DEFAULT '', owner TEXT, schema_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL REFERENCES runs(id), step_id TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
  fingerprint TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
  schema_version INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (run_id, step_id));
CREATE TABLE IF NOT EXISTS approvals (
  run_id TEXT NOT NULL REFERENCES runs(id), step_id TEXT NOT NULL, item TEXT NOT NULL,
  by_name TEXT NOT NULL, at TEXT NOT NULL, note TEXT NOT NULL,
  PRIMARY KEY (run_id, step_id, item, by_name));
CREATE TABLE IF NOT EXISTS history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, run_id TEXT NOT NULL,
  user TEXT NOT NULL, kind TEXT NOT NULL, env TEXT NOT NULL, data TEXT NOT NULL,
  UNIQUE (run_id, kind, env));
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, at TEXT NOT NULL,
  kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""

_RUN_COLUMNS = ("id", "runbook", "path", "runbook_sha", "inventory", "inventory_sha", "params",
                "user", "started_at", "plan_hash", "status", "ended_at", "message",
                "schema_version")


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._tx():
            for statement in _DDL.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # runs
    def create_run(self, run: RunRecord) -> None:
        row = asdict(run)
        row["params"] = json.dumps(row["params"], sort_keys=True)
        with self._tx():
            self._db.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) "  # noqa: S608 - fixed column names
                f"VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})",
                [row[c] for c in _RUN_COLUMNS])

    def get_run(self, run_id: str) -> RunRecord | None:
        cur = self._db.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE id = ?",  # noqa: S608
                               (run_id,))
        row = cur.fetchone()
        return _run(row) if row else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        cur = self._db.execute(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))
        return [_run(r) for r in cur.fetchall()]

    def set_run_status(self, run_id: str, status: str, *, ended_at: str | None = None,
                       message: str = "") -> None:
        with self._tx():
            self._db.execute("UPDATE runs SET status = ?, ended_at = ?, message = ? WHERE id = ?",
                             (status, ended_at, message, run_id))

    def claim_run(self, run_id: str, owner: str) -> str | None:
        with self._tx():
            row = self._db.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            holder = row[0] if row else None
            if holder and holder != owner and is_alive(holder):
                return str(holder)
            self._db.execute("UPDATE runs SET owner = ? WHERE id = ?", (owner, run_id))
        return None

    def release_run(self, run_id: str, owner: str) -> None:
        with self._tx():
            self._db.execute("UPDATE runs SET owner = NULL WHERE id = ? AND owner = ?",
                             (run_id, owner))

    # steps
    def save_step(self, record: StepRecord) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO steps (run_id, step_id, status, attempts, started_at, ended_at,"
                " fingerprint, result, error, schema_version, seq) VALUES (?,?,?,?,?,?,?,?,?,?,"
                " (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?))"
                " ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status,"
                " attempts = excluded.attempts, started_at = excluded.started_at,"
                " ended_at = excluded.ended_at, fingerprint = excluded.fingerprint,"
                " result = excluded.result, error = excluded.error",
                (record.run_id, record.step_id, record.status, record.attempts,
                 record.started_at, record.ended_at, record.fingerprint,
                 json.dumps(record.result, sort_keys=True, default=str), record.error,
                 record.schema_version, record.run_id))

    def steps(self, run_id: str) -> dict[str, StepRecord]:
        cur = self._db.execute(
            "SELECT run_id, step_id, status, attempts, started_at, ended_at, fingerprint, result,"
            " error, schema_version FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
        out = {}
        for r in cur.fetchall():
            out[r[1]] = StepRecord(run_id=r[0], step_id=r[1], status=r[2], attempts=r[3],
                                   started_at=r[4], ended_at=r[5], fingerprint=r[6],
                                   result=json.loads(r[7]), error=r[8], schema_version=r[9])
        return out

    # approvals and events
    def add_approval(self, approval: ApprovalRecord) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO approvals (run_id, step_id, item, by_name, at, note)"
                " VALUES (?,?,?,?,?,?)",
                (approval.run_id, approval.step_id, approval.item, approval.by, approval.at,
                 approval.note))

    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        cur = self._db.execute("SELECT run_id, step_id, by_name, at, note, item FROM approvals"
                               " WHERE run_id = ? ORDER BY at", (run_id,))
        return [ApprovalRecord(run_id=r[0], step_id=r[1], by=r[2], at=r[3], note=r[4], item=r[5])
                for r in cur.fetchall()]

    def add_event(self, event: EventRecord) -> None:
        with self._tx():
            self._db.execute("INSERT INTO events (run_id, at, kind, detail) VALUES (?,?,?,?)",
                             (event.run_id, event.at, event.kind,
                              json.dumps(event.detail, sort_keys=True)))

    def events(self, run_id: str) -> list[EventRecord]:
        cur = self._db.execute("SELECT run_id, at, kind, detail FROM events WHERE run_id = ?"
                               " ORDER BY seq", (run_id,))
        return [EventRecord(run_id=r[0], at=r[1], kind=r[2], detail=json.loads(r[3]))
                for r in cur.fetchall()]

    # history
    def add_history(self, record: HistoryRecord) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO history (at, run_id, user, kind, env, data) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (run_id, kind, env) DO NOTHING",
                (record.at, record.run_id, record.user, record.kind, record.env,
                 json.dumps(record.data, sort_keys=True, default=str)))

    def history(self, *, env: str | None = None, kind: str | None = None,
                limit: int = 50) -> list[HistoryRecord]:
        cur = self._db.execute(
            "SELECT at, run_id, user, kind, env, data FROM history"
            " WHERE (? IS NULL OR env = ?) AND (? IS NULL OR kind = ?)"
            " ORDER BY seq DESC LIMIT ?", (env, env, kind, kind, limit))
        return [HistoryRecord(at=r[0], run_id=r[1], user=r[2], kind=r[3], env=r[4],
                              data=json.loads(r[5])) for r in cur.fetchall()]


def _run(row: tuple[Any, ...]) -> RunRecord:
    data = dict(zip(_RUN_COLUMNS, row, strict=True))
    data["params"] = json.loads(data["params"])
    return RunRecord(**data)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back if the body raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
