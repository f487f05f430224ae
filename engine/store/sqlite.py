"""The default state store: one SQLite file, written in short transactions.

Every write is a single ``BEGIN IMMEDIATE`` transaction, so a process killed at any moment
leaves either the record before or the record after, never half of one, and writers (lock
takers, journal appenders) are serialized by SQLite's own write lock.

A read-only store needs read access alone: it opens the file with ``mode=ro``, switches
nothing to WAL and creates no table. SQLite reads a WAL database read-only through its
``-shm`` and ``-wal`` files when a writer has them open; when they are absent and cannot be
created (a read-only folder), every change is in the main file and it is read as
``immutable``. A missing file is a store without runs, and stays missing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, RunbookError, StoreDamaged
from engine.store.migrations import SQLITE, check_version, statements
from engine.store.sql import SqlStore

SYNCED = "FULL"  # a commit is on disk when COMMIT returns


class SqliteStore(SqlStore):
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._depth = 0
        self._blank = False
        if readonly:
            self._db, self._blank = _open_readonly(path)
            try:
                self._check()
                check_version(self.version(), readonly=True, where=str(path))
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise _damaged(path, str(exc)) from exc
            except InvalidInput:
                self._db.close()
                raise
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout=30000")
            self._check()
            # A store newer than this engine is refused before anything, WAL included, is
            # written to it.
            check_version(self.version(), readonly=False, where=str(path))
            self._wal()
            # Every commit reaches the disk before the engine goes on (not every build of
            # SQLite defaults to it), unless a transaction says it need not (``_tx``).
            self._db.execute(f"PRAGMA synchronous={SYNCED}")
            self._migrate(str(path))  # DDL is transactional in SQLite: all of it, or none
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if _busy(exc):
                raise
            raise _damaged(path, str(exc)) from exc
        except InvalidInput:
            self._db.close()
            raise

    def _check(self) -> None:
        # A file damaged in the middle (a bad disk, a copy taken mid-write) still opens, and
        # SQLite finds the damage only when a query reaches the bad page, possibly after a
        # run was recorded in the good ones: refuse it before anything is read or written.
        rows = self._db.execute("PRAGMA quick_check(1)").fetchall()
        if rows != [("ok",)]:
            raise _damaged(self.path, str(rows[0][0]) if rows else "no answer")

    def _wal(self) -> None:
        # Switching a new file to WAL needs a moment alone with it, and SQLite reports a
        # concurrent opener as busy without waiting: try again for a while.
        for _ in range(300):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                time.sleep(0.05)
        self._db.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def _tx(self, *, synced: bool = True) -> Iterator[None]:
        if self._depth:  # already inside this store's transaction
            yield
            return
        if not synced:
            # In WAL mode NORMAL appends the commit to the log without syncing it; the log
            # is written in order, so the next FULL commit's sync covers this one too.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth -= 1
            if not synced:
                self._db.execute(f"PRAGMA synchronous={SYNCED}")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, tuple(params))

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if self._depth:
            yield
            return
        # A deferred transaction reads one snapshot of a WAL database from its first read.
        self._db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self._db.execute("COMMIT")

    def emptied(self) -> str:
        if not self._blank:
            return ""
        size = self.path.stat().st_size if self.path.exists() else 0
        return (f"the state store {self.path} exists ({size} bytes) but has no journal "
                "table: an emptied or zeroed file, not a store without runs")

    def _batches(self, sql: str, size: int) -> Iterator[list[Any]]:
        # SQLite steps through the table as rows are fetched; the statement reads one
        # snapshot of a WAL database however long the reader takes.
        cursor = self._db.execute(sql)
        try:
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()

    def _has_table(self, name: str) -> bool:
        return bool(self._db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                     "AND name = ?", (name,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _damaged(path: Path, detail: str) -> StoreDamaged:
    return StoreDamaged(f"the state store is damaged ({' '.join(detail.split())}); nothing was "
                        "read or written: restore it from a backup or move it aside",
                        file=str(path))


def _open_readonly(path: Path) -> tuple[sqlite3.Connection, bool]:
    """The connection, and whether the file exists without tables (emptied or zeroed)."""
    if not path.exists():
        return _empty(), False
    uri = path.resolve().as_uri()
    try:
        db = _connect_probed(f"{uri}?mode=ro")
    except sqlite3.OperationalError as exc:
        if Path(f"{path}-wal").exists():  # changes not yet in the main file: cannot skip them
            raise RunbookError(f"cannot read the state store {path}: {exc} (its -wal and "
                               "-shm files need read access)") from exc
        try:
            db = _connect_probed(f"{uri}?mode=ro&immutable=1")
        except sqlite3.OperationalError as again:
            raise RunbookError(f"cannot read the state store {path}: {again}") from again
    except sqlite3.DatabaseError as exc:  # not a database at all: a zeroed or foreign file
        raise _damaged(path, str(exc)) from exc
    if db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                  "AND name = 'journal'").fetchone()[0] == 0:
        db.close()
        return _empty(), True
    return db, False


def _connect_probed(uri: str) -> sqlite3.Connection:
    """Connect and read once: SQLite opens lazily, so access problems show only then."""
    db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA query_only=ON")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def _empty() -> sqlite3.Connection:
    """A store with the tables and no rows, in memory: what reading a new store shows."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    for _, statement in statements(0, SQLITE):
        db.execute(statement)
    db.execute("PRAGMA query_only=ON")
    return db


def _busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the database (SQLITE_BUSY or SQLITE_LOCKED, any extended
    code): worth waiting for, unlike a damaged file."""
    primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
