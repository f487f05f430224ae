"""The SQL both state stores share. Backends supply the connection, the transaction, the
DDL and how a journal append is serialized."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from engine.status import RunStatus, StepStatus
from engine.store.chain import compact, dumps
from engine.store.migrations import (
    KEYRINGS_FROM,
    NEWEST_FROM,
    SHARED_FROM,
    SHARED_SIGNATURE_COLUMNS,
    SIGNATURE_COLUMNS,
    SIGNED_FROM,
)
from engine.store.owner import is_alive
from engine.store.records import (
    ApprovalAlreadyUsed,
    ApprovalRecord,
    EventRecord,
    HistoryRecord,
    LockRecord,
    PlanRecord,
    RunRecord,
    StepRecord,
    lock_envs,
    step_row_sha256,
)
from engine.store.sql_base import APPROVAL_COLUMNS, SqlBase

RUN_COLUMNS = ("id", "runbook", "path", "runbook_sha", "inventory", "inventory_sha", "params",
               "run_user", "started_at", "plan_hash", "status", "ended_at", "message",
               "lock_env", "schema_version")
STEP_COLUMNS = ("run_id", "step_id", "status", "attempts", "started_at", "ended_at",
                "fingerprint", "result", "error", "schema_version")
# Run statuses no write changes any more.
FINAL_STATUSES = (RunStatus.ABORTED, RunStatus.DONE)
FINAL_SQL = ", ".join(f"'{status}'" for status in FINAL_STATUSES)


class _LockTaken(Exception):
    """Rolls back the transaction that found a lock taken."""

    def __init__(self, holder: LockRecord) -> None:
        super().__init__(holder.env)
        self.holder = holder
# Step statuses worth a journal record: the end of an attempt, not its start.
JOURNALED_STEP_STATUSES = (StepStatus.OK, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.REFUSED,
                           StepStatus.INTERRUPTED, StepStatus.WAITING)


class SqlStore(SqlBase):
    """Everything but the connection: runs, steps, plans, approvals, events, history and
    locks, each write journaled in its transaction."""

    # -- runs ------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, *, owner: str | None = None,
                   keys: Mapping[str, Sequence[str]] | None = None) -> LockRecord | None:
        keyring = dumps({p: list(k) for p, k in keys.items()}) if keys else ""
        keyring_sha = hashlib.sha256(keyring.encode()).hexdigest() if keyring else ""
        row = asdict(run)
        row["params"] = compact(row["params"])
        row["run_user"] = row.pop("user")
        try:
            with self._tx():
                # Held from the start: no resume can take a run its first process still runs.
                self._execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}, owner) "
                              f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)}, ?)",
                              [*(row[c] for c in RUN_COLUMNS), owner])
                self._append(run.started_at, run.id, "run-start",
                             {"runbook": run.runbook, "runbook_sha": run.runbook_sha,
                              "inventory_sha": run.inventory_sha, "params": run.params,
                              "user": run.user, "plan_hash": run.plan_hash,
                              "lock": run.lock_env,
                              **({"keyring": keyring_sha} if keyring else {})})
                if keyring:  # most runs share one: kept once
                    self._insert_ignore("keyrings", ("sha256", "keys"), (keyring_sha, keyring),
                                        "sha256")
                self._take_locks(run.lock_env, run.id, run.user, run.started_at)
                if run.lock_env:
                    self._execute(
                        "INSERT INTO newest_runs (lock_env, started_at, run_id) "
                        "VALUES (?, ?, ?) ON CONFLICT (lock_env) DO UPDATE SET "
                        "started_at = excluded.started_at, run_id = excluded.run_id "
                        "WHERE excluded.started_at >= newest_runs.started_at",
                        (run.lock_env, run.started_at, run.id))
        except _LockTaken as taken:
            return taken.holder
        return None

    def _take_locks(self, envs: str | None, run_id: str, user: str, since: str) -> None:
        for env in lock_envs(envs):
            holder = self._take_lock(LockRecord(env, run_id, user, since))
            if holder is not None:
                raise _LockTaken(holder)

    def keyring(self, digest: str) -> dict[str, list[str]] | None:
        """The people's keys a run started with, by the hash its run-start record holds;
        None if the store has no such set, or has it edited (its text has another hash)."""
        if self._read_version() < KEYRINGS_FROM:
            return None
        row = self._one("SELECT keys FROM keyrings WHERE sha256 = ?", (digest,))
        if row is None or hashlib.sha256(str(row[0]).encode()).hexdigest() != digest:
            return None
        keys = json.loads(row[0])
        return {str(p): [str(k) for k in ks] for p, ks in keys.items()}

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._one(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?",
                        (run_id,))
        return _run(row) if row else None

    @contextmanager
    def locked_run(self, run_id: str) -> Iterator[RunRecord | None]:
        with self._tx():
            row = self._one(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?"
                            + self.for_update, (run_id,))
            yield _run(row) if row else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self._all(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs "
                         "ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))
        return [_run(r) for r in rows]

    def board_runs(self) -> list[RunRecord]:
        """The newest run of each lock (an environment, or several together) and every run
        waiting for an approval, in one query."""
        cols = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
        if self.version() >= NEWEST_FROM:
            rows = self._all(
                f"SELECT {cols} FROM newest_runs n JOIN runs r ON r.id = n.run_id "
                f"UNION SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE status = ?",
                (RunStatus.WAITING,))
            return [_run(r) for r in rows]
        # A store read before its migration (read-only): every run grouped by its lock.
        rows = self._all(
            f"SELECT {cols} FROM runs r JOIN (SELECT lock_env, MAX(started_at) AS newest "
            "FROM runs WHERE lock_env IS NOT NULL GROUP BY lock_env) n "
            "ON r.lock_env = n.lock_env AND r.started_at = n.newest "
            f"UNION SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE status = ?",
            (RunStatus.WAITING,))
        return [_run(r) for r in rows]

    def steps_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, StepRecord]]:
        """The steps of each of ``run_ids``, in one query."""
        if not run_ids:
            return {}
        rows = self._all(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id IN "
                         f"({', '.join('?' * len(run_ids))}) ORDER BY seq", tuple(run_ids))
        out: dict[str, dict[str, StepRecord]] = {r: {} for r in run_ids}
        for r in rows:
            data = dict(zip(STEP_COLUMNS, r, strict=True))
            data["result"] = json.loads(data["result"])
            data["status"] = StepStatus(data["status"])
            out[data["run_id"]][data["step_id"]] = StepRecord(**data)
        return out

    def approvals_of(self, run_ids: Sequence[str]) -> dict[str, list[ApprovalRecord]]:
        """The approvals given to each of ``run_ids``, in one query."""
        if not run_ids:
            return {}
        rows = self._all(f"SELECT {self._approval_select()} FROM {self._approvals_from()} "
                         f"WHERE a.run_id IN ({', '.join('?' * len(run_ids))}) ORDER BY a.at",
                         tuple(run_ids))
        out: dict[str, list[ApprovalRecord]] = {r: [] for r in run_ids}
        for r in rows:
            approval = _approval(r)
            out[approval.run_id].append(approval)
        return out

    def set_run_status(self, run_id: str, status: str, *, ended_at: str | None = None,
                       message: str = "", at: str = "") -> bool:
        with self._tx():
            # An aborted or done run is over: no later write, from whichever process, turns
            # it back into one that could be resumed or executed.
            cur = self._execute("UPDATE runs SET status = ?, ended_at = ?, message = ? "
                                f"WHERE id = ? AND status NOT IN ({FINAL_SQL})",
                                (status, ended_at, message, run_id))
            if cur.rowcount == 0:
                return False
            if status != RunStatus.RUNNING:
                self._append(at or ended_at or "", run_id, "run-status",
                             {"status": status, "message": message})
        return True

    def claim_run(self, run_id: str, owner: str) -> str | None:
        with self._tx():
            row = self._one("SELECT owner FROM runs WHERE id = ?"
                            + self.for_update, (run_id,))
            holder = row[0] if row else None
            if holder and holder != owner and is_alive(holder):
                return str(holder)
            self._execute("UPDATE runs SET owner = ? WHERE id = ?", (owner, run_id))
        return None

    def release_run(self, run_id: str, owner: str) -> None:
        with self._tx():
            self._execute("UPDATE runs SET owner = NULL WHERE id = ? AND owner = ?",
                          (run_id, owner))

    # -- steps -----------------------------------------------------------------------------
    def save_step(self, record: StepRecord,
                  uses: Sequence[Mapping[str, str]] = ()) -> None:
        values = (record.run_id, record.step_id, record.status, record.attempts,
                  record.started_at, record.ended_at, record.fingerprint,
                  compact(record.result), record.error, record.schema_version)
        # A step's start is not journaled and needs no sync of its own: killed at any point,
        # the process leaves it recorded; a machine that loses power may lose it, and the
        # step is then where it was before it started, which a resume runs just as it runs
        # a step found running. Its end is synced with the journal record, one sync a step.
        ends = record.status in JOURNALED_STEP_STATUSES
        with self._tx(synced=ends):
            for use in uses:
                self._use_plan_approval(use, record.run_id, record.ended_at or "")
            seq = self._one("SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?",
                            (record.run_id,))[0]
            self._execute(
                f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}, seq) "
                f"VALUES ({', '.join('?' for _ in STEP_COLUMNS)}, ?) "
                "ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, "
                "attempts = excluded.attempts, started_at = excluded.started_at, "
                "ended_at = excluded.ended_at, fingerprint = excluded.fingerprint, "
                "result = excluded.result, error = excluded.error", (*values, seq))
            if ends:
                self._append(record.ended_at or record.started_at, record.run_id, "step",
                             {"step": record.step_id, "status": str(record.status),
                              **({"error": record.error} if record.error else {}),
                              "row_sha256": step_row_sha256(
                                  str(record.status), record.attempts, record.fingerprint,
                                  record.error, values[7])})

    def steps(self, run_id: str) -> dict[str, StepRecord]:
        rows = self._all(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps "
                         "WHERE run_id = ? ORDER BY seq", (run_id,))
        out = {}
        for r in rows:
            data = dict(zip(STEP_COLUMNS, r, strict=True))
            data["result"] = json.loads(data["result"])
            data["status"] = StepStatus(data["status"])
            out[data["step_id"]] = StepRecord(**data)
        return out

    # -- plans and approvals ---------------------------------------------------------------
    def save_plan(self, plan: PlanRecord) -> None:
        with self._tx():
            self._insert_ignore("plans", ("hash", "runbook", "runbook_sha", "inventory_sha",
                                          "params", "created_at", "created_by", "path"),
                                (plan.hash, plan.runbook, plan.runbook_sha, plan.inventory_sha,
                                 compact(_with_bound(plan)), plan.created_at, plan.created_by,
                                 plan.path), "hash")

    def _use_plan_approval(self, use: Mapping[str, str], run_id: str, at: str) -> None:
        key = (use["plan_hash"], use["gate"], use["by"])
        added = self._insert_ignore("plan_approval_uses", ("plan_hash", "gate", "by_name",
                                                           "run_id", "at"), (*key, run_id, at),
                                    "plan_hash, gate, by_name")
        row = self._one("SELECT run_id FROM plan_approval_uses WHERE plan_hash = ? AND "
                        "gate = ? AND by_name = ?", key)
        if row[0] != run_id:
            raise ApprovalAlreadyUsed(use["by"], use["gate"], use["plan_hash"], row[0])
        if added:
            self._append(at, run_id, "plan-approval-used",
                         {"plan_hash": key[0], "gate": key[1], "by": key[2]})

    def plan_approval_uses(self, plan_hash: str) -> dict[tuple[str, str], str]:
        rows = self._all("SELECT gate, by_name, run_id FROM plan_approval_uses "
                         "WHERE plan_hash = ?", (plan_hash,))
        return {(r[0], r[1]): r[2] for r in rows}

    def find_plan(self, hash_prefix: str) -> list[PlanRecord]:
        rows = self._all("SELECT hash, runbook, runbook_sha, inventory_sha, params, "
                         "created_at, created_by, path FROM plans WHERE hash LIKE ? "
                         "ORDER BY hash",
                         (hash_prefix + "%",))
        return [_plan(r) for r in rows]

    def add_approval(self, approval: ApprovalRecord) -> None:
        row = asdict(approval)
        row["by_name"] = row.pop("by")
        # The signature, its key and the payload go once into signatures, by their hash.
        row["signed_sha256"] = approval.signed_sha256()
        row |= dict.fromkeys(SHARED_SIGNATURE_COLUMNS, "")
        columns = (*APPROVAL_COLUMNS, "signed_sha256")
        with self._tx():
            if approval.signature:
                self._insert_ignore("signatures", ("sha256", *SHARED_SIGNATURE_COLUMNS),
                                    (row["signed_sha256"], *(getattr(approval, c) for c in
                                                             SHARED_SIGNATURE_COLUMNS)),
                                    "sha256")
            self._execute(
                f"INSERT INTO approvals ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)}) "
                "ON CONFLICT (run_id, plan_hash, step_id, item, by_name) DO UPDATE SET "
                "at = excluded.at, note = excluded.note, ticket = excluded.ticket, "
                + ", ".join(f"{c} = excluded.{c}" for c in (*SIGNATURE_COLUMNS,
                                                            "signed_sha256")),
                [row[c] for c in columns])
            # An unsigned approval's record is as it was before signatures existed; a
            # signed one's holds the signer's key fingerprint and the hash of what the row
            # holds (the signature, the key and the payload signed).
            # Its time and run are the record's own; an empty field is left out.
            data = {k: v for k, v in asdict(approval).items()
                    if k not in ("at", "run_id", *SIGNATURE_COLUMNS) and v != ""}
            if approval.signature:
                data |= {"fingerprint": approval.fingerprint,
                         "signed_sha256": row["signed_sha256"]}
            self._append(approval.at, approval.run_id, "approval", data)

    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        rows = self._all(f"SELECT {self._approval_select()} FROM {self._approvals_from()} "
                         "WHERE a.run_id = ? ORDER BY a.at", (run_id,))
        return [_approval(r) for r in rows]

    def signed_approvals(self) -> list[ApprovalRecord]:
        version = self._read_version()
        if version < SIGNED_FROM:
            return []
        shared = " OR a.signed_sha256 <> ''" if version >= SHARED_FROM else ""
        rows = self._all(f"SELECT {self._approval_select()} FROM {self._approvals_from()} "
                         f"WHERE a.signature <> ''{shared} ORDER BY a.at")
        return [_approval(r) for r in rows]

    def plan_approvals(self, runbook: str) -> list[tuple[ApprovalRecord, PlanRecord]]:
        rows = self._all(
            f"SELECT {self._approval_select()}, p.hash, p.runbook, p.runbook_sha, "
            "p.inventory_sha, p.params, p.created_at, p.created_by, p.path FROM "
            f"{self._approvals_from()} JOIN plans p ON p.hash = a.plan_hash "
            "WHERE a.run_id = '' AND p.runbook = ? ORDER BY a.at",
            (runbook,))
        n = len(APPROVAL_COLUMNS)
        return [(_approval(r[:n]), _plan(r[n:])) for r in rows]

    # -- events and history ----------------------------------------------------------------
    def add_event(self, event: EventRecord) -> None:
        with self._tx():
            self._append(event.at, event.run_id, event.kind, event.detail)

    def events(self, run_id: str) -> list[EventRecord]:
        kinds = ("resume", "force-resume", "abort", "lock-release", "accept-drift",
                 "artifacts-removed")
        return [EventRecord(j.run_id, j.at, j.kind, j.data) for j in self.journal(run_id)
                if j.kind in kinds]

    def add_history(self, record: HistoryRecord) -> None:
        with self._tx():
            added = self._insert_ignore(
                "history", ("at", "run_id", "run_user", "kind", "env", "data"),
                (record.at, record.run_id, record.user, record.kind, record.env,
                 compact(record.data)), "run_id, kind, env")
            if added:
                self._append(record.at, record.run_id, "history",
                             {"kind": record.kind, "env": record.env, "data": record.data})

    def history(self, *, env: str | None = None, kind: str | None = None,
                limit: int = 50) -> list[HistoryRecord]:
        # Only the filters given, so that the (env, seq) index serves ``history --env``.
        given = [(column, value) for column, value in (("env", env), ("kind", kind))
                 if value is not None]
        where = " AND ".join(f"{column} = ?" for column, _ in given)
        rows = self._all("SELECT at, run_id, run_user, kind, env, data FROM history "
                         + (f"WHERE {where} " if where else "") + "ORDER BY seq DESC LIMIT ?",
                         (*(value for _, value in given), limit))
        return [HistoryRecord(at=r[0], run_id=r[1], user=r[2], kind=r[3], env=r[4],
                              data=json.loads(r[5])) for r in rows]

    def last_changes(self, kinds: Sequence[str]) -> dict[str, HistoryRecord]:
        """The newest record of one of ``kinds`` for each environment, in one query."""
        marks = ", ".join("?" * len(kinds))
        rows = self._all("SELECT at, run_id, run_user, kind, env, data FROM history WHERE seq "
                         f"IN (SELECT MAX(seq) FROM history WHERE kind IN ({marks}) "
                         "GROUP BY env)", tuple(kinds))
        return {r[4]: HistoryRecord(at=r[0], run_id=r[1], user=r[2], kind=r[3], env=r[4],
                                    data=json.loads(r[5])) for r in rows}

    # -- locks -----------------------------------------------------------------------------
    def _take_lock(self, lock: LockRecord) -> LockRecord | None:
        taken = self._insert_ignore("locks", ("env", "run_id", "run_user", "since"),
                                    (lock.env, lock.run_id, lock.user, lock.since), "env")
        if taken:
            self._append(lock.since, lock.run_id, "lock", {"env": lock.env, "user": lock.user})
            return None
        row = self._one("SELECT env, run_id, run_user, since FROM locks WHERE env = ?",
                        (lock.env,))
        holder = LockRecord(*row)
        return None if holder.run_id == lock.run_id else holder

    def acquire_lock(self, lock: LockRecord) -> LockRecord | None:
        try:
            with self._tx():
                self._take_locks(lock.env, lock.run_id, lock.user, lock.since)
        except _LockTaken as taken:
            return taken.holder
        return None

    def release_lock(self, env: str, *, run_id: str | None = None, by: str = "",
                     reason: str = "", at: str = "") -> bool:
        released = False
        with self._tx():
            for one in lock_envs(env):
                row = self._one("SELECT run_id FROM locks WHERE env = ?", (one,))
                if row is None or (run_id is not None and row[0] != run_id):
                    continue
                self._execute("DELETE FROM locks WHERE env = ?", (one,))
                kind = "unlock" if run_id is not None else "lock-release"
                self._append(at, row[0], kind, {"env": one, "by": by, "reason": reason})
                released = True
        return released

    def locks(self) -> list[LockRecord]:
        return [LockRecord(*r) for r in
                self._all("SELECT env, run_id, run_user, since FROM locks ORDER BY env")]




def _run(row: Sequence[Any]) -> RunRecord:
    data = dict(zip(RUN_COLUMNS, row, strict=True))
    data["params"] = json.loads(data["params"])
    data["user"] = data.pop("run_user")
    data["status"] = RunStatus(data["status"])
    return RunRecord(**data)


# What a plan binds is kept in its params column under a key no param name can have (params
# are lower-case names), so stores made before bindings existed read the same.
BOUND_KEY = "@bound"


def _with_bound(plan: PlanRecord) -> dict[str, Any]:
    return {**plan.params, BOUND_KEY: plan.bound} if plan.bound else dict(plan.params)


def _plan(row: Sequence[Any]) -> PlanRecord:
    params = json.loads(row[4])
    bound = params.pop(BOUND_KEY, {})
    return PlanRecord(hash=row[0], runbook=row[1], runbook_sha=row[2], inventory_sha=row[3],
                      params=params, created_at=row[5], created_by=row[6], path=row[7],
                      bound=bound)


def _approval(row: Sequence[Any]) -> ApprovalRecord:
    data = dict(zip(APPROVAL_COLUMNS, row, strict=True))
    data["by"] = data.pop("by_name")
    return ApprovalRecord(**data)
