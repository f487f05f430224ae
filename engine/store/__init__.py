"""Where runs, step checkpoints, approvals, locks, history and the audit journal are kept.

Records are JSON-native and versioned. Only ``plan.py`` reads checkpoints to decide what is
left to do; only ``execute.py`` writes them. Every write that matters to an audit (a run's
start, a step's result, an approval, a lock, a forced resume) appends to the hash-chained
journal in the same transaction, synced to disk before the engine goes on; a step's start,
which the journal does not record, is committed without a sync of its own, so a step costs
one sync. The tables are versioned: ``migrations.py`` brings an older store up to date when
this engine first writes to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.store.records import (
    SCHEMA_VERSION,
    ApprovalAlreadyUsed,
    ApprovalRecord,
    EventRecord,
    HistoryRecord,
    JournalRecord,
    LockRecord,
    PlanRecord,
    RunRecord,
    StateStore,
    StepRecord,
    lock_envs,
)

__all__ = [
    "SCHEMA_VERSION",
    "ApprovalAlreadyUsed",
    "ApprovalRecord",
    "EventRecord",
    "HistoryRecord",
    "JournalRecord",
    "LockRecord",
    "PlanRecord",
    "RunRecord",
    "StateStore",
    "StepRecord",
    "check",
    "home",
    "lock_envs",
    "migrate",
    "open_store",
    "state_location",
]


def home() -> Path:
    """The working folder for state and run artifacts: ``$RUNBOOK_HOME`` or ``./.runbook``."""
    return Path(os.environ.get("RUNBOOK_HOME") or ".runbook")


def state_location() -> str:
    return os.environ.get("RUNBOOK_STATE") or str(home() / "state.db")


def open_store(location: str | None = None, *, readonly: bool = False,
               journal_end: bool = True) -> StateStore:
    """The store at ``location`` (``$RUNBOOK_STATE`` by default), migrated to this engine's
    schema version if it is older. A ``readonly`` store only reads: it creates no file or
    table, migrates nothing, and works with read access alone (a read-only folder, a role
    granted SELECT). Its journal's end is checked as it opens (StoreDamaged) unless
    ``journal_end`` is False: ``audit verify`` reads all of it and reports each problem. Use it
    as ``with open_store(...) as store:``."""
    location = location or state_location()
    if location.startswith(("postgresql://", "postgres://")):
        from engine.store.postgres import PostgresStore
        return PostgresStore(location, readonly=readonly, journal_end=journal_end)
    from engine.store.sqlite import SqliteStore
    return SqliteStore(Path(location), readonly=readonly, journal_end=journal_end)


def check(location: str | None = None) -> int:
    """Check the whole store (every page of an SQLite file, the journal's end), however long
    it takes: StoreDamaged if it is not sound. Returns the number of journal records."""
    with open_store(location) as store:
        store.check_all()
        head = store.journal_head()
        return head[0] if head else 0


def migrate(location: str | None = None) -> tuple[int, int]:
    """Bring the store to this engine's schema version; (version before, version now)."""
    with open_store(location) as store:
        return store.migrated_from, store.version()
