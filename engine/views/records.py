"""What the use cases return and the presenters show: the records of a plan, a run, its
change record, an abort and a collection, each built by ``engine.api`` from the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.run.execute import RunResult
from engine.run.plan import Plan
from engine.store import ApprovalRecord, EventRecord, JournalRecord, RunRecord, StepRecord
from engine.trust import approval_info
from engine.views import drift as drift_mod

if TYPE_CHECKING:
    from engine.store.retention import Collected


@dataclass(frozen=True)
class PlanReport:
    plan: Plan
    dry_run: RunResult
    drift: tuple[drift_mod.Drift, ...] = ()  # of the environments it changes



@dataclass(frozen=True)
class RunDetail:
    run: RunRecord
    steps: dict[str, StepRecord]
    approvals: list[ApprovalRecord]
    events: list[EventRecord]
    given: tuple[approval_info.Given, ...] = ()  # the approvals, with what each was for
    waits: tuple[approval_info.Wait, ...] = ()  # what a waiting run waits for



@dataclass(frozen=True)
class GcResult:
    collected: Collected
    older_than: str  # as given, such as 90d
    source: str  # --older-than, or the inventory whose retention it is
    cutoff: str  # runs that ended before this moment
    dry_run: bool



@dataclass(frozen=True)
class ChangeRecord:
    """What the change record of a run is made of; ``plan`` is None when the runbook is
    gone or changed (the journal still tells what ran)."""

    detail: RunDetail
    journal: list[JournalRecord]
    plan: PlanReport | None



@dataclass(frozen=True)
class AbortResult:
    run: RunRecord
    holder: str | None = None  # the process that was executing it, asked to stop
    stopped: bool = True  # whether that process stopped within the time given



@dataclass(frozen=True)
class DeadEnd:
    """A failed run that resuming cannot make succeed: ``failed`` failed, and ``undone_by``
    (its on_failure steps) undid its change."""

    failed: str
    undone_by: tuple[str, ...] = ()
