"""What the SQL of both state stores stands on: the backend's hooks (connection,
transaction, batches), the tables' version and migration, and the journal: its append, hash
chained in the transaction of the write it records, and its reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from engine.clock import iso
from engine.errors import StoreDamaged
from engine.store.chain import (
    JOURNAL_COLUMNS,
    content_hash,
    dumps,
    next_link,
    text_hash,
)
from engine.store.migrations import (
    MIGRATIONS,
    POSITIONS_FROM,
    SHARED_FROM,
    SHARED_SIGNATURE_COLUMNS,
    SIGNATURE_COLUMNS,
    SIGNED_FROM,
    SQLITE,
    STORE_VERSION,
    VERSION_TABLE,
    Dialect,
    check_version,
)
from engine.store.records import (
    ApprovalRecord,
    ChainRecord,
    JournalRecord,
)
from engine.system.identity import origin

APPROVAL_COLUMNS = ("run_id", "step_id", "by_name", "at", "note", "item", "ticket",
                    "plan_hash", *SIGNATURE_COLUMNS)
# The journal records an open re-hashes (their cost does not grow with the journal).
TAIL = 32
JOURNAL_SELECT = f"SELECT {JOURNAL_COLUMNS} FROM journal j"
KIND = re.compile(r"[a-z][a-z-]*")  # a journal record's kind, as the engine names them


class SqlBase:
    """The connection's side of a store: the backends' hooks, the tables' version and
    migration, the journal's append and reads. Subclasses set up ``_db``."""

    placeholder = "?"
    for_update = ""  # row locking where the database has it (SQLite locks the whole file)
    dialect: Dialect = SQLITE
    migrated_from = STORE_VERSION  # the store's version when this engine opened it
    _tables_version: int | None = None  # the version its reads of approvals ask for (read once)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- backend hooks ---------------------------------------------------------------------
    def _tx(self, *, synced: bool = True) -> AbstractContextManager[Any]:
        """One transaction; ``synced=False`` commits without waiting for the disk: what it
        wrote survives the process being killed, not the machine losing power (and the
        next synced commit makes it durable with its own)."""
        raise NotImplementedError

    def _serialize_journal(self) -> None:
        """Called inside a transaction before appending to the journal."""


    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _insert_ignore(self, table: str, columns: Sequence[str], values: Sequence[Any],
                       conflict: str) -> int:
        """INSERT … ON CONFLICT DO NOTHING; the number of rows inserted."""
        cols = ", ".join(columns)
        marks = ", ".join(self.placeholder for _ in columns)
        cur = self._execute(f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
                            f"ON CONFLICT ({conflict}) DO NOTHING", values)
        return int(cur.rowcount)

    def close(self) -> None:
        raise NotImplementedError

    def _has_table(self, name: str) -> bool:
        raise NotImplementedError

    def _lock_schema(self) -> None:
        """Called inside the migration's transaction: no other engine migrates meanwhile."""

    # -- schema version --------------------------------------------------------------------
    def version(self) -> int:
        """The store's schema version: 0 for an empty database."""
        if self._has_table("store_version"):
            row = self._one("SELECT MAX(version) FROM store_version")
            if row[0] is not None:
                return int(row[0])
        # The tables of version 1 without a version table: made before versions were kept.
        return 1 if self._has_table("journal") else 0

    def _migrate(self, where: str) -> None:
        """Bring the store to this engine's version, in one transaction (see migrations)."""
        found = self.version()
        check_version(found, readonly=False, where=where)
        self.migrated_from = found
        if found == STORE_VERSION:
            return
        with self._tx():
            self._lock_schema()
            found = self.version()  # another engine may have migrated it meanwhile
            check_version(found, readonly=False, where=where)
            self.migrated_from = found
            if found == STORE_VERSION:
                return
            at = iso(datetime.now(UTC))
            self._execute(VERSION_TABLE)
            if found:
                self._insert_ignore("store_version", ("version", "applied_at"), (found, ""),
                                    "version")
            for version in range(found + 1, STORE_VERSION + 1):
                for statement in MIGRATIONS[version - 1](self.dialect):
                    self._execute(statement)
                self._execute("INSERT INTO store_version (version, applied_at) VALUES (?, ?)",
                              (version, at))
            if found:  # an upgrade, not a new store: the journal says who did it and when
                self._append(at, "", "store-migrate", {"from": found, "to": STORE_VERSION})

    def _approval_select(self) -> str:
        """The approvals table's columns as APPROVAL_COLUMNS orders them, from the tables
        ``_approvals_from`` names (``a``, and ``s`` for the signatures kept once); a store
        read before its migration to SIGNED_FROM (read-only) has no signatures: empty ones.
        A signature, key or payload is the row's own (written before SHARED_FROM) or the
        one kept once; "" (unsigned) if that one is not there."""
        version = self._read_version()
        out = []
        for c in APPROVAL_COLUMNS:
            if c in SIGNATURE_COLUMNS and version < SIGNED_FROM:
                out.append(f"'' AS {c}")
            elif c in SHARED_SIGNATURE_COLUMNS and version >= SHARED_FROM:
                out.append(f"CASE WHEN a.signed_sha256 = '' THEN a.{c} "
                           f"ELSE COALESCE(s.{c}, '') END AS {c}")
            else:
                out.append(f"a.{c}")
        return ", ".join(out)

    def _approvals_from(self) -> str:
        return "approvals a LEFT JOIN signatures s ON s.sha256 = a.signed_sha256" \
            if self._read_version() >= SHARED_FROM else "approvals a"

    def _read_version(self) -> int:
        if self._tables_version is None:
            self._tables_version = self.version()
        return self._tables_version

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(sql, params).fetchall())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    # -- journal ---------------------------------------------------------------------------
    def _append(self, at: str, run_id: str, kind: str, data: dict[str, Any]) -> None:
        # Whoever runs this process, besides the name it claims: a borrowed name is traceable.
        data = {**data, **origin()}
        self._serialize_journal()
        seq, prev = next_link(self._one("SELECT seq, hash FROM journal "
                                        "ORDER BY seq DESC LIMIT 1"))
        text = dumps(data)
        digest = text_hash(prev, seq, at, run_id, kind, text)
        # The hash it follows is the last row's: kept there, not twice (JOURNAL_COLUMNS).
        self._execute("INSERT INTO journal (seq, at, run_id, kind, data, prev_hash, hash) "
                      "VALUES (?, ?, ?, ?, ?, '', ?)", (seq, at, run_id, kind, text, digest))

    def journal(self, run_id: str | None = None) -> list[JournalRecord]:
        # Two queries, not one with "? IS NULL OR run_id = ?": that form cannot use an index.
        rows = (self._all(f"{JOURNAL_SELECT} ORDER BY seq") if run_id is None else
                self._all(f"{JOURNAL_SELECT} WHERE run_id = ? ORDER BY seq", (run_id,)))
        return [_journal_record(r) for r in rows]

    def scan_journal(self, batch: int = 1000, after: int = 0,
                     kinds: Sequence[str] = ()) -> Iterator[JournalRecord]:
        """The journal in order, ``batch`` records at a time; those after record ``after``;
        only those of ``kinds`` if given (the store skips the others)."""
        return (_journal_record(row) for row in self._journal_rows(batch, after, kinds))

    def scan_chain(self, batch: int = 1000, after: int = 0) -> Iterator[ChainRecord]:
        """As ``scan_journal``, each record's data as stored (what the chain check hashes),
        not parsed."""
        return (ChainRecord(*row) for row in self._journal_rows(batch, after, ()))

    def _journal_rows(self, batch: int, after: int, kinds: Sequence[str]) -> Iterator[Any]:
        terms = [f"seq > {int(after)}"] if after else []
        if kinds:
            if not all(KIND.fullmatch(k) for k in kinds):
                raise ValueError(f"not a journal record kind: {kinds!r}")
            terms.append(f"kind IN ({', '.join(repr(k) for k in kinds)})")
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        for rows in self._batches(f"{JOURNAL_SELECT}{where} ORDER BY seq", batch):
            yield from rows

    def snapshot(self) -> AbstractContextManager[None]:
        """One read transaction: what is read inside it is the store at one moment."""
        raise NotImplementedError

    def cross_check(self, after: int | None = None) -> Iterator[str]:
        """The tables against the journal; ``after``: only the runs with journal records
        after that one (and those holding a lock)."""
        from engine.store import crosscheck

        if after is not None:
            return crosscheck.cross_check_since(self._all, after)
        runs = int(self._one("SELECT COUNT(*) FROM runs")[0])
        return crosscheck.cross_check(self._all, runs)

    def unrecorded_approvals(self, approvals: Sequence[ApprovalRecord]) -> set[ApprovalRecord]:
        from engine.store import crosscheck

        return crosscheck.unrecorded(self._all, approvals)

    def verified_position(self) -> tuple[int, str, str] | None:
        """The last journal record ``audit verify`` found intact with all before it: its
        number, hash and when; None if none was (or the store is older than the table)."""
        if self.version() < POSITIONS_FROM:
            return None
        row = self._one("SELECT seq, hash, at FROM audit_positions ORDER BY seq DESC LIMIT 1")
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def remember_verified(self, seq: int, digest: str, at: str, by: str) -> None:
        """Record that the journal up to record ``seq`` (hash ``digest``) was found intact."""
        with self._tx(synced=False):
            self._insert_ignore("audit_positions", ("seq", "hash", "at", "by_name"),
                                (seq, digest, at, by), "seq")

    def record_hash_at(self, seq: int) -> str | None:
        """The hash of journal record ``seq``, if there is one."""
        row = self._one("SELECT hash FROM journal WHERE seq = ?", (seq,))
        return None if row is None else str(row[0])

    def journal_head(self) -> tuple[int, str] | None:
        """The journal's last record: its number and hash; None for an empty journal."""
        row = self._one("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")
        return None if row is None else (int(row[0]), str(row[1]))

    def tail_problem(self, sealed: tuple[int, str] | None = None) -> str:
        """What is wrong with the journal's end, read by its index whatever the journal's
        length: its last ``TAIL`` records hashed again and linked to each other, and the
        record ``sealed`` (a number and hash an engine saw last) still there as it was. ''
        when nothing is."""
        rows = [ChainRecord(*r) for r in reversed(self._all(
            f"{JOURNAL_SELECT} ORDER BY seq DESC LIMIT {TAIL}"))]
        for i, record in enumerate(rows):
            before = rows[i - 1] if i else None
            if content_hash(record) != record.hash:
                return f"journal record {record.seq} does not match its hash"
            if before is not None and (record.seq != before.seq + 1
                                       or record.prev_hash != before.hash):
                return f"journal record {record.seq} does not follow record {before.seq}"
        if sealed is not None:
            seq, digest = sealed
            row = self._one("SELECT hash FROM journal WHERE seq = ?", (seq,))
            if row is None:
                last = rows[-1].seq if rows else 0
                return (f"the journal ends at record {last}, before record {seq} an engine "
                        "wrote (records removed)")
            if row[0] != digest:
                return f"journal record {seq} is not the one an engine wrote (replaced)"
        return ""

    def check_all(self) -> None:
        """The whole store checked, however long that takes (``runbook store check``, gc):
        StoreDamaged if it is not sound. The backends add what their database can check."""
        problem = self.tail_problem()
        if problem:
            raise damaged(self.where, problem)

    @property
    def where(self) -> str:
        """The store as a message names it."""
        raise NotImplementedError

    def emptied(self) -> str:
        """Why this store, which should hold a journal, holds none; '' if nothing says so."""
        return ""

    def _batches(self, sql: str, size: int) -> Iterator[list[Any]]:
        """The rows of one query, ``size`` at a time, never all of them at once."""
        raise NotImplementedError


def _journal_record(r: Sequence[Any]) -> JournalRecord:
    return JournalRecord(seq=r[0], at=r[1], run_id=r[2], kind=r[3], data=json.loads(r[4]),
                         prev_hash=r[5], hash=r[6])


def damaged(where: str, detail: str) -> StoreDamaged:
    """The store at ``where`` refused as damaged: nothing read or written."""
    return StoreDamaged(f"the state store is damaged ({' '.join(detail.split())}); nothing was "
                        "read or written: restore it from a backup or move it aside",
                        file=where)
