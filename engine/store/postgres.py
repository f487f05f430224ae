"""A shared state store on PostgreSQL (``RUNBOOK_STATE=postgresql://…``), so operators on
several machines see the same runs, approvals, locks and history.

Locks are rows whose primary key is the environment: taking one is a single INSERT that the
database accepts for exactly one run. Journal appends are serialized with a transaction-level
advisory lock, so the hash chain has one order.

A read-only store runs no DDL and sets ``default_transaction_read_only``: a role granted
CONNECT, USAGE on the schema and SELECT on the tables is enough to read everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from engine.errors import RunbookError
from engine.store.migrations import POSTGRES, check_version
from engine.store.sql import SqlStore
from engine.store.sql_base import damaged

_JOURNAL_LOCK = 0x72756E62  # any constant: the advisory lock that orders journal appends
_DDL_LOCK = _JOURNAL_LOCK + 1


class PostgresStore(SqlStore):
    placeholder = "%s"
    for_update = " FOR UPDATE"
    dialect = POSTGRES

    def __init__(self, dsn: str, *, readonly: bool = False, journal_end: bool = True) -> None:
        try:
            self._db = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise RunbookError(f"cannot reach the PostgreSQL state store: {exc}") from exc
        self._depth = 0
        self._where = _without_password(dsn)
        try:
            if readonly:
                self._readonly()
            else:
                self._migrate(self._where)  # PostgreSQL's DDL is transactional too
            # The server keeps its own pages sound; the journal's end is checked as SQLite's is.
            problem = self.tail_problem() if journal_end else ""
            if problem:
                raise damaged(self._where, problem)
        except BaseException:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        return self._where

    def _readonly(self) -> None:
        # No DDL, and the server itself refuses any write from this session.
        self._db.execute("SET default_transaction_read_only = on")
        if self._one("SELECT to_regclass('journal')")[0] is None:
            raise RunbookError("the PostgreSQL state store has no runbook tables: no run was "
                               "recorded there yet, or this role cannot see them (it needs "
                               "USAGE on their schema and SELECT on them)")
        check_version(self.version(), readonly=True, where=self._where)

    def version(self) -> int:
        try:
            return super().version()
        except psycopg.errors.InsufficientPrivilege as exc:
            # A read-only role granted SELECT on the tables there were before a migration
            # made store_version: say what to grant rather than guess the version.
            raise RunbookError("this role cannot read the state store's version (table "
                               "store_version): grant it SELECT on that table as on the "
                               "others, e.g. GRANT SELECT ON ALL TABLES IN SCHEMA public "
                               "TO the role") from exc

    def _has_table(self, name: str) -> bool:
        # pg_class read as a table, with this statement's snapshot: to_regclass looks names
        # up in a catalog cache that may not show a table another engine's migration has
        # just committed, and this one would then run the migration again.
        return bool(self._one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relname = %s AND c.relkind IN ('r', 'p') "
            "AND n.nspname = ANY (current_schemas(false)))", (name,))[0])

    def _lock_schema(self) -> None:
        self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))

    @contextmanager
    def _tx(self, *, synced: bool = True) -> Iterator[None]:
        # Without synced, the server commits without waiting for its WAL flush.
        with self._outermost(None if synced else "SET LOCAL synchronous_commit = off"):
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        # Every statement of the transaction reads the snapshot of its first.
        with self._outermost("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"):
            yield

    @contextmanager
    def _outermost(self, first: str | None) -> Iterator[None]:
        """One transaction, begun with ``first``, unless one is open already (then its
        own settings hold)."""
        if self._depth:
            yield
            return
        self._depth += 1
        try:
            with self._db.transaction():
                if first is not None:
                    self._db.execute(first)
                yield
        finally:
            self._depth -= 1

    def _serialize_journal(self) -> None:
        self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_JOURNAL_LOCK,))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(self._q(sql), tuple(params))

    def _batches(self, sql: str, size: int) -> Iterator[list[Any]]:
        # A server-side cursor: the server keeps the result and hands it over a batch at a
        # time (a client-side one would receive every row before the first is read). It
        # lives in a transaction, which also gives the whole scan one snapshot.
        with self._db.transaction(), self._db.cursor(name="runbook_scan") as cursor:
            cursor.execute(self._q(sql))
            while rows := cursor.fetchmany(size):
                yield rows

    def close(self) -> None:
        self._db.close()


def _without_password(dsn: str) -> str:
    """The DSN as errors may show it: no password, whichever form it was given in."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the PostgreSQL state store"
    parts.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})
