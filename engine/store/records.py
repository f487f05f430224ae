"""The records a store holds (runs, step checkpoints, approvals, events, history, plans,
locks, journal records) and what every backend offers (``StateStore``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from engine.status import RunStatus, StepStatus

SCHEMA_VERSION = 1  # of the run and step records; the tables' version is STORE_VERSION


@dataclass(frozen=True)
class RunRecord:
    id: str
    runbook: str
    path: str
    runbook_sha: str
    inventory: str | None
    inventory_sha: str
    params: dict[str, Any]
    user: str
    started_at: str
    plan_hash: str
    status: RunStatus = RunStatus.RUNNING
    ended_at: str | None = None
    message: str = ""
    lock_env: str | None = None  # the environment this run holds the lock of
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    step_id: str
    status: StepStatus  # as recorded: running, ok, skipped, failed, refused, ...
    attempts: int
    started_at: str
    fingerprint: str
    ended_at: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ApprovalRecord:
    """A person's approval: of a run's step or checklist item, or of a gate (``cab``) for a run
    or for a plan (``plan_hash``) before any run exists."""

    run_id: str  # "" for an approval given to a plan
    step_id: str
    by: str
    at: str
    note: str = ""
    item: str = ""  # a checklist item or a gate name; "" for the step as a whole
    ticket: str = ""
    plan_hash: str = ""
    # A signed approval (engine.trust.signatures): the armored SSH signature, the signer's public
    # key and its fingerprint, and the exact payload signed.
    signature: str = ""
    signer_key: str = ""
    fingerprint: str = ""
    payload: str = ""

    def signed_sha256(self) -> str:
        """What a signed approval's journal record holds of its signature, key and payload
        (the row holds them; the record, their hash); "" for an unsigned one."""
        return signed_sha256(self.payload, self.signature, self.signer_key) \
            if self.signature else ""


def signed_sha256(payload: str, signature: str, signer_key: str) -> str:
    text = json.dumps([payload, signature, signer_key])
    return hashlib.sha256(text.encode()).hexdigest()


def step_row_sha256(status: str, attempts: int, fingerprint: str, error: str,
                    result: str) -> str:
    """What a step's journal record holds of its row: the hash of the row's status, attempts,
    fingerprint, error and result (as the table keeps it). The row holds them; the record
    names the step and its status, and this hash. (Records written before hold the values
    and the result's hash.)"""
    # Each field after its length: no two rows give the same text.
    fields = (status, str(attempts), fingerprint, error, result)
    text = "".join(f"{len(f)}:{f}\n" for f in fields)
    return hashlib.sha256(text.encode()).hexdigest()


def start_keys(data: Mapping[str, Any], keyring: Callable[[str], dict[str, list[str]] | None]
               ) -> Mapping[str, Sequence[str]] | None:
    """The people's keys a run-start record gives: the set it names by hash (``keyring``
    reads it; {} when the store does not hold it as it was), or holds itself (records
    written before); None if it records none."""
    if data.get("keyring"):
        return keyring(str(data["keyring"])) or {}
    keys = data.get("keys")
    return keys if isinstance(keys, Mapping) else None


def recorded_signature(data: Mapping[str, Any]) -> str:
    """The hash of the signature an approval's journal record gives: the one it holds, or
    (a record written before records held hashes) of the texts it holds; "" if unsigned."""
    if data.get("signed_sha256"):
        return str(data["signed_sha256"])
    if data.get("signature"):
        return signed_sha256(str(data.get("payload", "")), str(data["signature"]),
                             str(data.get("signer_key", "")))
    return ""


@dataclass(frozen=True)
class EventRecord:
    run_id: str
    at: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryRecord:
    """Something a run did to an environment: a promotion, a rollback, a restore."""

    at: str
    run_id: str
    user: str
    kind: str
    env: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanRecord:
    """The inputs of a plan, so that approvals given to its hash can be checked later."""

    hash: str
    runbook: str
    runbook_sha: str
    inventory_sha: str
    params: dict[str, Any]
    created_at: str
    created_by: str
    path: str = ""  # the runbook file the plan was made from
    bound: dict[str, Any] = field(default_factory=dict)  # what the runbook binds, resolved


class ApprovalAlreadyUsed(Exception):
    """An approval given to a plan was used by another run's gate first."""

    def __init__(self, by: str, gate: str, plan_hash: str, run_id: str) -> None:
        super().__init__(f"{by}'s approval of the {gate} gate for plan {plan_hash[:12]} was "
                         f"already used by run {run_id}")
        self.run_id = run_id


@dataclass(frozen=True)
class LockRecord:
    env: str
    run_id: str
    user: str
    since: str


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    at: str
    run_id: str
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class ChainRecord(NamedTuple):
    """A journal row as the chain check reads it: its data as stored, not parsed."""

    seq: int
    at: str
    run_id: str
    kind: str
    text: str
    prev_hash: str
    hash: str


class StateStore(Protocol):
    """Opened by ``with open_store(...) as store``: leaving the block closes it."""

    migrated_from: int  # the store's schema version when this engine opened it

    def __enter__(self) -> StateStore: ...
    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...
    def version(self) -> int:
        """The store's schema version (engine.store.migrations)."""
    def create_run(self, run: RunRecord, *, owner: str | None = None,
                   keys: Mapping[str, Sequence[str]] | None = None) -> LockRecord | None:
        """Record a new run, held by ``owner``, and take its lock; return the lock's holder
        instead if it is taken. ``keys``, the people's public keys as the inventory lists
        them now, are kept (once per set, in the keyrings table) and named by their hash in
        the run's start record: its signed approvals are checked against them later."""
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def keyring(self, digest: str) -> dict[str, list[str]] | None:
        """The people's keys a run started with, by the hash its run-start record holds
        (None: no such set, or edited)."""
    def locked_run(self, run_id: str) -> AbstractContextManager[RunRecord | None]:
        """One transaction in which the run's row is locked: the status read here stays
        true until the transaction ends, and the store's writes made inside it are part of
        it (an exception rolls them all back)."""
    def list_runs(self, limit: int = 20) -> list[RunRecord]: ...
    def board_runs(self) -> list[RunRecord]:
        """The newest run of each lock value and every waiting run (one query)."""
    def steps_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, StepRecord]]: ...
    def approvals_of(self, run_ids: Sequence[str]) -> dict[str, list[ApprovalRecord]]: ...
    def set_run_status(self, run_id: str, status: str, *, ended_at: str | None = None,
                       message: str = "", at: str = "") -> bool:
        """Record the run's status; False (and nothing written) if the run is aborted or
        done: those are final."""
    def claim_run(self, run_id: str, owner: str) -> str | None:
        """Take the run for this process; return the owner holding it instead, if alive."""
    def release_run(self, run_id: str, owner: str) -> None: ...
    def save_step(self, record: StepRecord,
                  uses: Sequence[Mapping[str, str]] = ()) -> None:
        """Checkpoint a step; ``uses`` (plan_hash, gate, by) are approvals given to a plan
        that this step's gate passed with: recorded as used by this run in the same
        transaction, or ApprovalAlreadyUsed (and nothing written) if another run has one."""
    def steps(self, run_id: str) -> dict[str, StepRecord]: ...
    def add_approval(self, approval: ApprovalRecord) -> None: ...
    def approvals(self, run_id: str) -> list[ApprovalRecord]: ...
    def signed_approvals(self) -> list[ApprovalRecord]:
        """Every approval stored with a signature, of runs and plans."""
    def plan_approvals(self, runbook: str) -> list[tuple[ApprovalRecord, PlanRecord]]: ...
    def plan_approval_uses(self, plan_hash: str) -> dict[tuple[str, str], str]:
        """The run that used each approval given to this plan, by (gate, person)."""
    def save_plan(self, plan: PlanRecord) -> None: ...
    def find_plan(self, hash_prefix: str) -> list[PlanRecord]: ...
    def add_event(self, event: EventRecord) -> None: ...
    def events(self, run_id: str) -> list[EventRecord]: ...
    def add_history(self, record: HistoryRecord) -> None:
        """Once per (run, kind, env): a step re-run after a crash does not record twice."""
    def history(self, *, env: str | None = None, kind: str | None = None,
                limit: int = 50) -> list[HistoryRecord]: ...
    def last_changes(self, kinds: Sequence[str]) -> dict[str, HistoryRecord]:
        """The newest record of one of ``kinds`` for each environment (one query)."""
    def acquire_lock(self, lock: LockRecord) -> LockRecord | None:
        """Take the environment's lock; return the holder instead if another run has it."""
    def release_lock(self, env: str, *, run_id: str | None = None, by: str = "",
                     reason: str = "", at: str = "") -> bool: ...
    def locks(self) -> list[LockRecord]: ...
    def journal(self, run_id: str | None = None) -> list[JournalRecord]: ...
    def scan_journal(self, batch: int = 1000, after: int = 0,
                     kinds: Sequence[str] = ()) -> Iterator[JournalRecord]:
        """The whole journal in order, read from the store ``batch`` records at a time, so
        that reading it takes the same memory whatever its length; only ``kinds`` if given."""
    def scan_chain(self, batch: int = 1000, after: int = 0) -> Iterator[ChainRecord]:
        """As ``scan_journal``, each record's data as stored, for the chain check."""
    def snapshot(self) -> AbstractContextManager[None]:
        """One read transaction: what is read inside it is the store at one moment."""
    def cross_check(self, after: int | None = None) -> Iterator[str]:
        """Each mismatch between the tables (runs, steps, approvals, locks, history) and
        the journal, read a range of runs at a time (engine.store.crosscheck)."""
    def unrecorded_approvals(self, approvals: Sequence[ApprovalRecord]) -> set[ApprovalRecord]:
        """Those of ``approvals`` that no journal record gives as they are."""
    def journal_head(self) -> tuple[int, str] | None:
        """The journal's last record: its number and hash; None for an empty journal."""
    def verified_position(self) -> tuple[int, str, str] | None:
        """The last record ``audit verify`` found intact with all before it: seq, hash, when."""
    def remember_verified(self, seq: int, digest: str, at: str, by: str) -> None:
        """Record that the journal up to record ``seq`` was found intact."""
    def record_hash_at(self, seq: int) -> str | None:
        """The hash of journal record ``seq``, if there is one."""
    def tail_problem(self, sealed: tuple[int, str] | None = None) -> str:
        """What is wrong with the journal's end, checked by its index; '' if nothing is."""
    def check_all(self) -> None:
        """The whole store checked, however long it takes: StoreDamaged if it is not sound."""
    def emptied(self) -> str:
        """Why this store, which should hold a journal, holds none; '' if nothing says so."""
    def close(self) -> None: ...


def lock_envs(value: str | None) -> list[str]:
    """A run's locks: one environment, or several separated by commas."""
    return sorted({e.strip() for e in (value or "").split(",") if e.strip()})
