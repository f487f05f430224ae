"""The default state store: one SQLite file, written in short transactions.

Every write is a single ``BEGIN IMMEDIATE`` transaction, so a process killed at any moment
leaves either the record before or the record after, never half of one, and writers (lock
takers, journal appenders) are serialized by SQLite's own write lock.

A read-only store needs read access alone: it opens the file with ``mode=ro``, switches
nothing to WAL and creates no table. SQLite reads a WAL database read-only through its
``-shm`` and ``-wal`` files when a writer has them open; when they are absent and cannot be
created (a read-only folder), every change is in the main file and it is read as
``immutable``. A missing file is a store without runs, and stays missing.

Opening a store costs nothing that grows with it. An engine that closes a store it wrote
seals it: beside the file (``state.db-seal``) it notes the file as it left it (device, inode,
size, modification time) and the journal's last record. The next engine to open it finds the
file as sealed, or checks the whole file first (``PRAGMA quick_check``): after an unclean end
(a process killed while it wrote), a change by anything else (a disk, a copy taken mid-write,
an editor), or a file never sealed. Every open then hashes the journal's last records again
and finds the sealed record where it was (``SqlBase.tail_problem``); SQLite finds a damaged
page itself when a query reads it, which refuses that command too. ``runbook store check`` and
``runbook gc`` check the whole file whatever the seal says.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput, RunbookError, StoreDamaged
from engine.store.migrations import SQLITE, check_version, statements
from engine.store.sql import SqlStore
from engine.store.sql_base import damaged

SYNCED = "FULL"  # a commit is on disk when COMMIT returns
SEAL = "-seal"  # beside the file, as SQLite's -wal and -shm are


class SqliteStore(SqlStore):
    def __init__(self, path: Path, *, readonly: bool = False, journal_end: bool = True) -> None:
        self.path = path
        self._depth = 0
        self._blank = False
        self._writer = not readonly
        self._sound = False  # checked on open: only a sound store is sealed at its close
        self._journal_end = journal_end
        if readonly:
            self._db, self._blank = _open_readonly(path)
            try:
                sealed = self._check()
                check_version(self.version(), readonly=True, where=str(path))
                self._check_tail(sealed)
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
            sealed = self._check()
            # A store newer than this engine is refused before anything, WAL included, is
            # written to it.
            check_version(self.version(), readonly=False, where=str(path))
            self._wal()
            # Every commit reaches the disk before the engine goes on (not every build of
            # SQLite defaults to it), unless a transaction says it need not (``_tx``).
            self._db.execute(f"PRAGMA synchronous={SYNCED}")
            self._migrate(str(path))  # DDL is transactional in SQLite: all of it, or none
            self._check_tail(sealed)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if _busy(exc):
                raise
            raise _damaged(path, str(exc)) from exc
        except InvalidInput:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        return str(self.path)

    def _check(self) -> tuple[int, str] | None:
        """The whole file checked unless it is as an engine sealed it; the journal record
        the seal names, if the seal is this file's."""
        seal = _read_seal(self.path)
        now = _identity(self.path)
        if seal is None or now is None or seal["file"] != now:
            self._check_file()
        if seal is None or now is None or seal["file"][:2] != now[:2]:
            return None  # another file now, or none sealed: its record says nothing of it
        head: tuple[int, str] | None = seal["journal"]
        return head

    def _check_file(self) -> None:
        # A file damaged in the middle (a bad disk, a copy taken mid-write) still opens, and
        # SQLite finds the damage only when a query reaches the bad page, possibly after a
        # run was recorded in the good ones: refuse it before anything is read or written.
        rows = self._db.execute("PRAGMA quick_check(1)").fetchall()
        if rows != [("ok",)]:
            raise _damaged(self.path, str(rows[0][0]) if rows else "no answer")

    def _check_tail(self, sealed: tuple[int, str] | None) -> None:
        if not self._journal_end:
            return  # read to be verified record by record: not sealed again by this engine
        problem = "" if self._blank else self.tail_problem(sealed)
        if problem:
            if sealed is not None and "removed" in problem:
                problem += (f"; if it was restored from a backup on purpose, remove "
                            f"{self.path}{SEAL}")
            raise _damaged(self.path, problem)
        self._sound = True

    def check_all(self) -> None:
        try:
            self._check_file()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, str(exc)) from exc
        super().check_all()

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
        head = None
        if self._writer and self._sound:
            with contextlib.suppress(sqlite3.Error):
                head = self.journal_head() or (0, "")
        # The last connection to close folds the write-ahead log into the file: it is
        # sealed as that leaves it.
        self._db.close()
        if head is not None:
            _write_seal(self.path, head)


def _damaged(path: Path, detail: str) -> StoreDamaged:
    return damaged(str(path), detail)


def _identity(path: Path) -> list[int] | None:
    """The file as a seal names it: device, inode, size, modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _read_seal(path: Path) -> dict[str, Any] | None:
    """The seal beside ``path``, if there is one as an engine writes it."""
    try:
        data = json.loads(Path(f"{path}{SEAL}").read_text(encoding="utf-8"))
        file, journal = data["file"], data["journal"]
        if not (isinstance(file, list) and len(file) == 4
                and all(isinstance(n, int) for n in file)):
            return None
        if not (isinstance(journal, list) and len(journal) == 2
                and isinstance(journal[0], int) and isinstance(journal[1], str)):
            return None
        return {"file": file, "journal": (journal[0], journal[1]) if journal[0] else None}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_seal(path: Path, head: tuple[int, str]) -> None:
    """Seal ``path`` as it is now (written aside and renamed: a reader never sees half of
    one). A seal that cannot be written costs the next open a whole check, nothing else."""
    file = _identity(path)
    if file is None:
        return
    seal = Path(f"{path}{SEAL}")
    aside = seal.with_name(f"{seal.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        aside.write_text(json.dumps({"file": file, "journal": list(head)}), encoding="utf-8")
        os.replace(aside, seal)


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
