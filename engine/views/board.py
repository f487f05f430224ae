"""The environment board: what each environment runs, since when, whether its overlay, cluster
and history agree, its last run, its lock, and the runs waiting for someone's approval.

The team looks at one page before and during a release; everything on it is read from the
cluster and the state store as they are now. ``build`` is a pure function of what was read, so
that the same board is shown as text, JSON or HTML, and timed without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from engine.status import RunStatus, StepStatus
from engine.store import ApprovalRecord, LockRecord, RunRecord, StepRecord, lock_envs
from engine.trust import approval_info
from engine.trust.gates import parse_time
from engine.views.drift import Drift


@dataclass(frozen=True)
class Waiting:
    """A run stopped at an approval step, and what it waits for."""

    run: RunRecord
    waits: tuple[approval_info.Wait, ...]


@dataclass(frozen=True)
class EnvRow:
    env: str
    drift: Drift  # the overlay's and the cluster's image, the last recorded change, problems
    digest: str | None  # of the image the cluster runs, when the cluster or history says it
    since: str | None  # the last recorded change to the image the cluster runs
    soak_hours: float | None  # since then, until the board was made
    last_run: RunRecord | None
    lock: LockRecord | None
    waiting: tuple[Waiting, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "image": self.drift.cluster, "digest": self.digest,
                "since": self.since, "soak_hours": self.soak_hours,
                "overlay": self.drift.overlay,
                "agrees": self.drift.agreement,
                "checked": self.drift.checked,
                "drift": list(self.drift.problems),
                "history": dict(self.drift.history) if self.drift.history else None,
                "last_run": _run_dict(self.last_run),
                "lock": asdict(self.lock) if self.lock else None,
                "waiting": [_waiting_dict(w) for w in self.waiting]}


@dataclass(frozen=True)
class Board:
    inventory: str
    at: str  # when it was read
    rows: tuple[EnvRow, ...]
    elsewhere: tuple[Waiting, ...] = ()  # waiting runs that lock no environment shown

    @property
    def waiting(self) -> list[Waiting]:
        seen: dict[str, Waiting] = {}
        for w in [*(w for row in self.rows for w in row.waiting), *self.elsewhere]:
            seen.setdefault(w.run.id, w)
        return list(seen.values())


def _run_dict(run: RunRecord | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"id": run.id, "runbook": run.runbook, "status": run.status, "user": run.user,
            "started_at": run.started_at, "ended_at": run.ended_at, "params": run.params,
            "message": run.message}


def _waiting_dict(w: Waiting) -> dict[str, Any]:
    return {"run": _run_dict(w.run), "waits": [x.as_dict() for x in w.waits]}


def graph_order(environments: Mapping[str, Any], promotions: Mapping[str, Any]) -> list[str]:
    """The environments in promotion order (dev before qa before the uats …); those the graph
    does not order keep the inventory's order."""
    names = list(environments)
    before: dict[str, set[str]] = {n: set() for n in names}
    for src, targets in promotions.items():
        for dst in targets or ():
            if src in before and dst in before:
                before[dst].add(src)
    out: list[str] = []
    done: set[str] = set()
    while len(out) < len(names):
        left = [n for n in names if n not in done]
        # The first whose sources are all placed; in a cycle, the first left.
        pick = next((n for n in left if before[n] <= done), left[0])
        out.append(pick)
        done.add(pick)
    return out


def waiting_runs(runs: Iterable[RunRecord], steps: Mapping[str, Mapping[str, StepRecord]],
                 approvals: Mapping[str, Sequence[ApprovalRecord]]) -> list[Waiting]:
    """The waiting runs with what each waits for, as ``runbook status RUN`` computes it."""
    out = []
    for run in runs:
        if run.status != RunStatus.WAITING:
            continue
        waits = [w for s in steps.get(run.id, {}).values() if s.status == StepStatus.WAITING
                 for w in approval_info.waits(s.step_id, s.result, approvals.get(run.id, []))]
        out.append(Waiting(run, tuple(waits)))
    return sorted(out, key=lambda w: w.run.started_at)


def build(inventory: str, order: Sequence[str], drifts: Sequence[Drift],
          runs: Iterable[RunRecord], locks: Iterable[LockRecord],
          waiting: Sequence[Waiting], now: datetime) -> Board:
    """The board from what was read: ``drifts`` by environment, the newest runs of each lock,
    the locks held and the waiting runs."""
    by_env = {d.env: d for d in drifts}
    newest: dict[str, RunRecord] = {}
    for run in runs:
        for env in lock_envs(run.lock_env):
            if env not in newest or (run.started_at, run.id) > (newest[env].started_at,
                                                                 newest[env].id):
                newest[env] = run
    held = {lock.env: lock for lock in locks}
    shown = set(order)
    rows = []
    for env in order:
        drift = by_env.get(env) or Drift(env, None, None, None, (f"{env}: not read",))
        since, digest = _since(drift)
        soak = round((now - parse_time(since)).total_seconds() / 3600, 1) if since else None
        rows.append(EnvRow(env, drift, digest, since, soak, newest.get(env), held.get(env),
                           tuple(w for w in waiting if env in lock_envs(w.run.lock_env))))
    elsewhere = tuple(w for w in waiting if not shown & set(lock_envs(w.run.lock_env)))
    return Board(inventory, now.isoformat(timespec="seconds"), tuple(rows), elsewhere)


def _since(drift: Drift) -> tuple[str | None, str | None]:
    """When the image the cluster runs was put there (the last recorded change, if it was to
    that image), and its digest (from the cluster's image reference, else that change)."""
    last = drift.history
    running = drift.cluster
    if isinstance(running, Mapping):  # a release: since its last change, if all of it runs
        return (str(last["at"]) if last and not drift.problems else None), None
    digest = running.split("@", 1)[1] if running and "@" in running else None
    if not last or (running is not None and last.get("image") != running):
        return None, digest
    recorded = last.get("digest")
    return str(last["at"]), digest or (str(recorded) if isinstance(recorded, str) and recorded
                                       else None)
