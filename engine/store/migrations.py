"""Versioned schema migrations of the state store, for SQLite and PostgreSQL alike.

A store records the migrations applied to it in ``store_version``. A store made before
versions were recorded has the tables of migration 1 and no such table: it is version 1.
Opening a store for writing applies what is missing, all in one transaction taken under the
store's write lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), so two
engines starting at once migrate once, and a process killed in the middle leaves the store
as it was. Migrations add: no table, column or row is ever dropped (only an index that a
later one supersedes), and no column the journal's hash chain covers is changed, so every
record verifies after a migration. An upgrade of a store that had records is itself a
journal record (``store-migrate``, from and to which version, by whom).

A read-only open never migrates: it reads a store from READABLE_FROM on (older versions'
tables hold everything its queries ask for) and asks for ``runbook store migrate`` below
that. A store newer than this engine is refused either way: its meaning is unknown here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.errors import InvalidInput


@dataclass(frozen=True)
class Dialect:
    """What differs between the backends' DDL."""

    serial: str  # an auto-increment primary key column's type


SQLITE = Dialect(serial="INTEGER PRIMARY KEY AUTOINCREMENT")
POSTGRES = Dialect(serial="BIGSERIAL PRIMARY KEY")

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS store_version (
  version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"""


def _v1_tables(d: Dialect) -> Iterator[str]:
    """Runs, steps, approvals, plans, history, locks and the journal, as first released."""
    yield """CREATE TABLE IF NOT EXISTS runs (
      id TEXT PRIMARY KEY, runbook TEXT NOT NULL, path TEXT NOT NULL,
      runbook_sha TEXT NOT NULL, inventory TEXT, inventory_sha TEXT NOT NULL,
      params TEXT NOT NULL, run_user TEXT NOT NULL, started_at TEXT NOT NULL,
      plan_hash TEXT NOT NULL, status TEXT NOT NULL, ended_at TEXT,
      message TEXT NOT NULL DEFAULT '', owner TEXT, lock_env TEXT,
      schema_version INTEGER NOT NULL)"""
    yield "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)"
    yield """CREATE TABLE IF NOT EXISTS steps (
      run_id TEXT NOT NULL, step_id TEXT NOT NULL, status TEXT NOT NULL,
      attempts INTEGER NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
      fingerprint TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
      schema_version INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (run_id, step_id))"""
    yield """CREATE TABLE IF NOT EXISTS approvals (
      run_id TEXT NOT NULL, plan_hash TEXT NOT NULL, step_id TEXT NOT NULL,
      item TEXT NOT NULL, by_name TEXT NOT NULL, at TEXT NOT NULL, note TEXT NOT NULL,
      ticket TEXT NOT NULL, PRIMARY KEY (run_id, plan_hash, step_id, item, by_name))"""
    yield """CREATE TABLE IF NOT EXISTS plans (
      hash TEXT PRIMARY KEY, runbook TEXT NOT NULL, runbook_sha TEXT NOT NULL,
      inventory_sha TEXT NOT NULL, params TEXT NOT NULL, created_at TEXT NOT NULL,
      created_by TEXT NOT NULL, path TEXT NOT NULL)"""
    yield f"""CREATE TABLE IF NOT EXISTS history (
      seq {d.serial}, at TEXT NOT NULL, run_id TEXT NOT NULL, run_user TEXT NOT NULL,
      kind TEXT NOT NULL, env TEXT NOT NULL, data TEXT NOT NULL, UNIQUE (run_id, kind, env))"""
    yield """CREATE TABLE IF NOT EXISTS locks (
      env TEXT PRIMARY KEY, run_id TEXT NOT NULL, run_user TEXT NOT NULL,
      since TEXT NOT NULL)"""
    yield """CREATE TABLE IF NOT EXISTS journal (
      seq INTEGER PRIMARY KEY, at TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL,
      data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"""
    yield "CREATE INDEX IF NOT EXISTS journal_run ON journal (run_id)"
    yield """CREATE TABLE IF NOT EXISTS plan_approval_uses (
      plan_hash TEXT NOT NULL, gate TEXT NOT NULL, by_name TEXT NOT NULL,
      run_id TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (plan_hash, gate, by_name))"""


def _v2_ordered_lookups(d: Dialect) -> Iterator[str]:
    """One run's journal and one environment's history, read in order from an index:
    ``status RUN`` and ``history --env`` no longer read and sort the whole table."""
    yield "CREATE INDEX IF NOT EXISTS history_env ON history (env, seq)"
    yield "CREATE INDEX IF NOT EXISTS journal_run_seq ON journal (run_id, seq)"
    # Its leading column is journal_run_seq's: one index fewer to keep up on every append.
    yield "DROP INDEX IF EXISTS journal_run"


def _v3_signed_approvals(d: Dialect) -> Iterator[str]:
    """An approval keeps its SSH signature, the signer's public key and fingerprint, and the
    payload signed (engine.trust.signatures); an unsigned one has them empty."""
    for column in SIGNATURE_COLUMNS:
        yield f"ALTER TABLE approvals ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"


def _v4_reads_by_index(d: Dialect) -> Iterator[str]:
    """What the read commands ask for, each found by an index at any size of store: the
    newest runs in order (ties by id), the runs waiting for an approval, and the newest run
    of each lock kept in a table of its own as runs start (the board read it by grouping
    every run); and the journal records ``audit verify`` found intact, where the next one
    starts."""
    yield "CREATE INDEX IF NOT EXISTS runs_started_id ON runs (started_at, id)"
    yield "DROP INDEX IF EXISTS runs_started"  # the leading column of runs_started_id
    yield "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)"
    yield """CREATE TABLE IF NOT EXISTS newest_runs (
      lock_env TEXT PRIMARY KEY, started_at TEXT NOT NULL, run_id TEXT NOT NULL)"""
    yield """INSERT INTO newest_runs (lock_env, started_at, run_id)
      SELECT r.lock_env, r.started_at, MAX(r.id) FROM runs r
      JOIN (SELECT lock_env, MAX(started_at) AS newest FROM runs
            WHERE lock_env IS NOT NULL GROUP BY lock_env) n
        ON r.lock_env = n.lock_env AND r.started_at = n.newest
      GROUP BY r.lock_env, r.started_at
      ON CONFLICT (lock_env) DO NOTHING"""
    # Where `audit verify` found the journal intact: the next one starts there.
    yield """CREATE TABLE IF NOT EXISTS audit_positions (
      seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, at TEXT NOT NULL, by_name TEXT NOT NULL)"""


def _v5_signatures_once(d: Dialect) -> Iterator[str]:
    """A signature, its key and the payload signed, kept once (by the hash of the three) for
    all the approvals one command signed: an attestation of three items held them three
    times in the approvals table, and in each journal record. Rows written before keep
    their own copies."""
    yield """CREATE TABLE IF NOT EXISTS signatures (
      sha256 TEXT PRIMARY KEY, payload TEXT NOT NULL, signature TEXT NOT NULL,
      signer_key TEXT NOT NULL)"""
    yield "ALTER TABLE approvals ADD COLUMN signed_sha256 TEXT NOT NULL DEFAULT ''"


def _v6_keys_once(d: Dialect) -> Iterator[str]:
    """The people's public keys a run starts with, kept once per set (by its hash) in a
    keyrings table: each run-start record held them all, and now holds their hash. From this
    version on, a journal record follows the hash kept in the row before it (its prev_hash
    column is '': chain.JOURNAL_COLUMNS) and a step's record holds the hash of its row
    (records.step_row_sha256). Records written before keep what they hold."""
    yield "CREATE TABLE IF NOT EXISTS keyrings (sha256 TEXT PRIMARY KEY, keys TEXT NOT NULL)"


SIGNATURE_COLUMNS = ("signature", "signer_key", "fingerprint", "payload")
SHARED_SIGNATURE_COLUMNS = ("signature", "signer_key", "payload")  # in signatures from v5
SIGNED_FROM = 3  # the version whose approvals table has SIGNATURE_COLUMNS
NEWEST_FROM = 4  # the version with the newest_runs table
POSITIONS_FROM = 4  # the version with the audit_positions table
SHARED_FROM = 5  # the version with the signatures table
KEYRINGS_FROM = 6  # the version with the keyrings table

# Version N is reached by applying MIGRATIONS[N - 1]; never edit one that was released.
MIGRATIONS: tuple[Callable[[Dialect], Iterator[str]], ...] = (
    _v1_tables, _v2_ordered_lookups, _v3_signed_approvals, _v4_reads_by_index,
    _v5_signatures_once, _v6_keys_once)
STORE_VERSION = len(MIGRATIONS)
READABLE_FROM = 1  # the oldest version whose tables this engine's reads understand


def check_version(found: int, *, readonly: bool, where: str) -> None:
    """Refuse a store this engine cannot use as it is."""
    if found > STORE_VERSION:
        raise InvalidInput(f"the state store is at version {found}, newer than this engine "
                           f"(version {STORE_VERSION}) knows: use a newer runbook; nothing "
                           "was read or written", file=where)
    if readonly and 0 < found < READABLE_FROM:
        raise InvalidInput(f"the state store is at version {found}, older than this engine "
                           f"reads: run `runbook store migrate` to bring it to version "
                           f"{STORE_VERSION}", file=where)


def statements(found: int, dialect: Dialect) -> Iterator[tuple[int, str]]:
    """(version, statement) for what brings a store from version ``found`` to the latest."""
    for version, migration in enumerate(MIGRATIONS[found:], start=found + 1):
        for statement in migration(dialect):
            yield version, statement
