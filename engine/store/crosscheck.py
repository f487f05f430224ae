"""The tables against the journal: the journal is the truth, and every run, status, step
result, approval, lock and history row the engine acts on must be what its records say.

A row written behind the journal's back (an approval inserted into the approvals table
alone, a status or lock changed by hand) chains nothing, so the hash chain cannot show it:
only comparing the two can. The comparison reads the store a range of run ids at a time
(the journal through its (run_id, seq) index, the tables through their keys), so its memory
is that of one range whatever the store's size. Gates use ``unrecorded`` to count only
approvals whose journal record says the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.status import StepStatus
from engine.store.chain import JOURNAL_COLUMNS, content_hash
from engine.store.records import ApprovalRecord, ChainRecord, JournalRecord, step_row_sha256

Query = Callable[[str, Sequence[Any]], list[Any]]

PAGE = 2000  # journal records (or runs) a range holds, about
RUN_FIELDS = ("runbook", "runbook_sha", "inventory_sha", "params", "user", "plan_hash", "lock")
STEP_FIELDS = ("status", "attempts", "fingerprint", "error")
# A step's start is committed without a journal record: a row still running is an attempt
# the journal has not seen end, not a mismatch.
UNJOURNALED_STEP = StepStatus.RUNNING

ApprovalKey = tuple[str, str, str, str, str]  # run, plan hash, step, item, person


def approval_key(approval: ApprovalRecord) -> ApprovalKey:
    return (approval.run_id, approval.plan_hash, approval.step_id, approval.item, approval.by)


def _record_key(data: dict[str, Any], run_id: str) -> ApprovalKey:
    return (run_id, str(data.get("plan_hash", "")), str(data.get("step_id", "")),
            str(data.get("item", "")), str(data.get("by", "")))


def _sound(row: Sequence[Any]) -> bool:
    """The record's content is what its hash covers (the chain itself is audit's to check)."""
    record = ChainRecord(*row)
    return content_hash(record) == record.hash


def _journal(row: Sequence[Any]) -> JournalRecord:
    return JournalRecord(seq=row[0], at=row[1], run_id=row[2], kind=row[3],
                         data=json.loads(row[4]), prev_hash=row[5], hash=row[6])


def unrecorded(query: Query, approvals: Sequence[ApprovalRecord]) -> set[ApprovalRecord]:
    """The approvals among ``approvals`` that no journal record gives as they are (person,
    what for, time, note and ticket): one indexed query per run they belong to."""
    out: set[ApprovalRecord] = set()
    for run_id in sorted({a.run_id for a in approvals}):
        recorded: set[tuple[ApprovalKey, str, str, str]] = set()
        for row in query(f"SELECT {JOURNAL_COLUMNS} FROM journal j WHERE run_id = ? AND "
                         "kind = 'approval' ORDER BY seq", (run_id,)):
            rec = _journal(row)
            if _sound(row):
                recorded.add((_record_key(rec.data, run_id), rec.at,
                              str(rec.data.get("note", "")), str(rec.data.get("ticket", ""))))
        out.update(a for a in approvals if a.run_id == run_id and
                   (approval_key(a), a.at, a.note, a.ticket) not in recorded)
    return out


@dataclass
class _Expected:
    """What one run's journal records say its rows are."""

    start: JournalRecord | None = None
    status: str = ""
    message: str = ""
    steps: dict[str, JournalRecord] = field(default_factory=dict)
    approvals: dict[ApprovalKey, JournalRecord] = field(default_factory=dict)
    locks: dict[str, JournalRecord] = field(default_factory=dict)
    history: dict[tuple[str, str], JournalRecord] = field(default_factory=dict)

    def add(self, rec: JournalRecord) -> None:
        data = rec.data
        if rec.kind == "run-start":
            self.start, self.status, self.message = rec, "running", ""
        elif rec.kind == "run-status":
            self.status, self.message = str(data.get("status")), str(data.get("message", ""))
        elif rec.kind == "resume":  # recorded in the transaction that sets it running
            self.status, self.message = "running", ""
        elif rec.kind == "step":
            self.steps[str(data.get("step"))] = rec
        elif rec.kind == "approval":
            self.approvals[_record_key(data, rec.run_id)] = rec
        elif rec.kind == "lock":
            self.locks[str(data.get("env"))] = rec
        elif rec.kind in ("unlock", "lock-release"):
            self.locks.pop(str(data.get("env")), None)
        elif rec.kind == "history":
            self.history.setdefault((str(data.get("kind")), str(data.get("env"))), rec)


class _Rows:
    """The table rows of one range of run ids, by run."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, list[dict[str, Any]]] = {}
        self.approvals: dict[str, list[dict[str, Any]]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}

    def run_ids(self) -> set[str]:
        return set(self.runs) | set(self.steps) | set(self.approvals) | set(self.history)


def cross_check(query: Query, run_count: int) -> Iterator[str]:
    """Every mismatch between the tables and the journal, as one line naming the table,
    the row and what differs. ``run_count`` is the runs table's size (an emptied journal
    is said once, before the runs it leaves without records)."""
    if run_count and not query("SELECT seq FROM journal ORDER BY seq LIMIT 1", ()):
        yield (f"journal: it has no records, but the runs table has {run_count} runs "
               "(the journal was emptied)")
    locks = {r[0]: {"env": r[0], "run_id": r[1], "user": r[2], "since": r[3]}
             for r in query("SELECT env, run_id, run_user, since FROM locks", ())}
    lo: str | None = None
    while True:
        hi = _upper(query, lo)
        yield from _check_range(query, lo, hi, locks)
        if hi is None:
            break
        lo = hi
    # Lock rows of runs no range found (locks hold one row per environment: a small table).
    for env, row in sorted(locks.items()):
        yield (f"locks: {env}: held by run {row['run_id']} in the table; the journal has no "
               "lock of it")


def cross_check_since(query: Query, after: int) -> Iterator[str]:
    """The mismatches of the runs with journal records after record ``after`` and of the
    runs holding a lock, each read by its run id: what changed since a verification."""
    locks = {r[0]: {"env": r[0], "run_id": r[1], "user": r[2], "since": r[3]}
             for r in query("SELECT env, run_id, run_user, since FROM locks", ())}
    # Read along the records' numbers (a DISTINCT would read the run id index whole).
    touched = {str(r[0]) for r in query("SELECT run_id FROM journal WHERE seq > ?",
                                        (after,)) if r[0]}
    for run_id in sorted(touched | {row["run_id"] for row in locks.values()}):
        yield from _check_range(query, None, None, locks, only=run_id)
    for env, row in sorted(locks.items()):
        yield (f"locks: {env}: held by run {row['run_id']} in the table; the journal has no "
               "lock of it")


def _where(column: str, lo: str | None, hi: str | None,
           only: str | None = None) -> tuple[str, tuple[str, ...]]:
    if only is not None:
        return f" WHERE {column} = ?", (only,)
    parts, params = [], []
    if lo is not None:
        parts.append(f"{column} > ?")
        params.append(lo)
    if hi is not None:
        parts.append(f"{column} <= ?")
        params.append(hi)
    return (" WHERE " + " AND ".join(parts)) if parts else "", tuple(params)


def _upper(query: Query, lo: str | None) -> str | None:
    """Where the range after ``lo`` ends: about PAGE journal records or runs on, whichever
    comes first (both read from an index); None for the last range."""
    ends = []
    for table, column in (("journal", "run_id"), ("runs", "id")):
        where, params = _where(column, lo, None)
        row = query(f"SELECT {column} FROM {table}{where} ORDER BY {column} LIMIT 1 "
                    f"OFFSET {PAGE}", params)
        if row:
            ends.append(str(row[0][0]))
    return min(ends) if ends else None


def _check_range(query: Query, lo: str | None, hi: str | None,
                 locks: dict[str, dict[str, Any]], only: str | None = None) -> Iterator[str]:
    where, params = _where("run_id", lo, hi, only)
    expected: dict[str, _Expected] = {}
    # Runs with an edited record: the chain check names the record, and what the tables
    # should hold is not known from it.
    doubtful: set[str] = set()
    for row in query(f"SELECT {JOURNAL_COLUMNS} FROM journal j{where} ORDER BY run_id, seq",
                     params):
        rec = _journal(row)
        if not _sound(row):
            doubtful.add(rec.run_id)
        expected.setdefault(rec.run_id, _Expected()).add(rec)
    rows = _Rows()
    run_where, run_params = _where("id", lo, hi, only)
    for r in query("SELECT id, runbook, runbook_sha, inventory_sha, params, run_user, "
                   f"plan_hash, lock_env, started_at, status, message FROM runs{run_where}",
                   run_params):
        rows.runs[r[0]] = {"runbook": r[1], "runbook_sha": r[2], "inventory_sha": r[3],
                           "params": json.loads(r[4]), "user": r[5], "plan_hash": r[6],
                           "lock": r[7], "at": r[8], "status": r[9], "message": r[10]}
    for r in query("SELECT run_id, step_id, status, attempts, fingerprint, error, result "
                   f"FROM steps{where}", params):
        rows.steps.setdefault(r[0], []).append(
            {"step": r[1], "status": r[2], "attempts": r[3], "fingerprint": r[4],
             "error": r[5], "result_sha256": hashlib.sha256(r[6].encode()).hexdigest(),
             "row_sha256": step_row_sha256(r[2], r[3], r[4], r[5], r[6])})
    for r in query("SELECT run_id, plan_hash, step_id, item, by_name, at, note, ticket "
                   f"FROM approvals{where}", params):
        rows.approvals.setdefault(r[0], []).append(
            {"key": (r[0], r[1], r[2], r[3], r[4]), "at": r[5], "note": r[6], "ticket": r[7]})
    for r in query(f"SELECT run_id, kind, env, at, data FROM history{where}", params):
        rows.history.setdefault(r[0], []).append(
            {"kind": r[1], "env": r[2], "at": r[3], "data": json.loads(r[4])})
    for run_id in sorted(rows.run_ids() | set(expected)):
        if run_id in doubtful:
            _held(run_id, locks, expected[run_id])
            continue
        want = expected.get(run_id, _Expected())
        yield from _run(run_id, rows.runs.get(run_id), want)
        yield from _steps(run_id, rows.steps.get(run_id, []), want)
        yield from _approvals(run_id, rows.approvals.get(run_id, []), want)
        yield from _history(run_id, rows.history.get(run_id, []), want)
        yield from _locks(run_id, locks, want)


def _differs(fields: Iterable[str], row: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """'name is X, the journal says Y' for each field the record holds and the row changed:
    records written before a field was journaled are compared on what they hold."""
    return [f"{name} is {row.get(name)!r}, the journal says {data[name]!r}"
            for name in fields if name in data and row.get(name) != data[name]]


def _run(run_id: str, row: dict[str, Any] | None, want: _Expected) -> Iterator[str]:
    if not run_id:  # plan approvals and store upgrades: no run
        return
    if want.start is None:
        if row is not None:
            yield f"runs: run {run_id}: no run-start record in the journal"
        return
    if row is None:
        yield f"runs: run {run_id}: the journal records its start; the table has no row"
        return
    diffs = _differs(RUN_FIELDS, row, want.start.data)
    if row["at"] != want.start.at:
        diffs.append(f"started_at is {row['at']!r}, the journal says {want.start.at!r}")
    diffs += _differs(("status", "message"), row,
                      {"status": want.status, "message": want.message})
    for diff in diffs:
        yield f"runs: run {run_id}: {diff}"


def _steps(run_id: str, rows: list[dict[str, Any]], want: _Expected) -> Iterator[str]:
    seen = set()
    for row in rows:
        seen.add(row["step"])
        rec = want.steps.get(row["step"])
        if row["status"] == UNJOURNALED_STEP:
            continue
        if rec is None:
            yield (f"steps: run {run_id}, step {row['step']}: {row['status']} in the table; "
                   "the journal records no result of it")
            continue
        for diff in _differs((*STEP_FIELDS, "result_sha256"), row, rec.data):
            yield f"steps: run {run_id}, step {row['step']}: {diff}"
        if "row_sha256" in rec.data and row["status"] == rec.data.get("status") and \
                row["row_sha256"] != rec.data["row_sha256"]:
            yield (f"steps: run {run_id}, step {row['step']}: its attempts, fingerprint, error "
                   "or result is not what the journal records")
    for step in sorted(set(want.steps) - seen):
        yield (f"steps: run {run_id}, step {step}: the journal records it "
               f"{want.steps[step].data.get('status')}; the table has no row")


def _approval_name(key: ApprovalKey) -> str:
    run_id, plan_hash, step_id, item, by = key
    what = f"run {run_id}" if run_id else f"plan {plan_hash[:12]}"
    part = ", ".join(p for p in (f"step {step_id}" if step_id else "",
                                 f"item {item}" if item else "") if p)
    return f"{what}{', ' + part if part else ''}, by {by}"


def _approvals(run_id: str, rows: list[dict[str, Any]], want: _Expected) -> Iterator[str]:
    seen = set()
    for row in rows:
        key = row["key"]
        seen.add(key)
        rec = want.approvals.get(key)
        if rec is None:
            yield (f"approvals: {_approval_name(key)}: no journal record (added to the "
                   "table alone; gates do not count it)")
            continue
        # A field a record leaves out is empty (records from store version 6 on).
        diffs = _differs(("note", "ticket"), row, {"note": "", "ticket": "", **rec.data})
        if row["at"] != rec.at:
            diffs.append(f"at is {row['at']!r}, the journal says {rec.at!r}")
        for diff in diffs:
            yield f"approvals: {_approval_name(key)}: {diff}"
    for key in sorted(set(want.approvals) - seen):
        yield f"approvals: {_approval_name(key)}: in the journal; the table has no row"


def _history(run_id: str, rows: list[dict[str, Any]], want: _Expected) -> Iterator[str]:
    seen = set()
    for row in rows:
        key = (row["kind"], row["env"])
        seen.add(key)
        rec = want.history.get(key)
        name = f"history: run {run_id}, {row['kind']} of {row['env']}"
        if rec is None:
            yield f"{name}: no journal record"
            continue
        if row["data"] != rec.data.get("data"):
            yield f"{name}: its data is not what the journal records"
        if row["at"] != rec.at:
            yield f"{name}: at is {row['at']!r}, the journal says {rec.at!r}"
    for kind, env in sorted(set(want.history) - seen):
        yield f"history: run {run_id}, {kind} of {env}: in the journal; the table has no row"


def _held(run_id: str, locks: dict[str, dict[str, Any]], want: _Expected) -> None:
    """Take a doubtful run's lock rows out of the comparison, as checking them would."""
    for env in want.locks:
        if env in locks and locks[env]["run_id"] == run_id:
            del locks[env]


def _locks(run_id: str, locks: dict[str, dict[str, Any]], want: _Expected) -> Iterator[str]:
    for env, rec in sorted(want.locks.items()):
        row = locks.get(env)
        if row is None or row["run_id"] != run_id:
            holder = f"run {row['run_id']} holds it" if row else "no run holds it"
            yield (f"locks: {env}: the journal has it held by run {run_id}; in the table "
                   f"{holder}")
            continue
        del locks[env]
        if row["since"] != rec.at or row["user"] != rec.data.get("user"):
            yield (f"locks: {env}: held by run {run_id} for {row['user']} since "
                   f"{row['since']}; the journal says for {rec.data.get('user')} since "
                   f"{rec.at}")
