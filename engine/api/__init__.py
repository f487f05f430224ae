"""What the CLI (or any caller) can ask of the engine: plan, run, resume, approve, abort,
status, validate, gc. Typed keyword arguments in, result records out; nothing printed.

One module per kind of use case: ``runs`` (plan, run, resume), ``queries`` (what is recorded
and what runs), ``approvals`` (approve and what a plan needs), ``audit`` (the journal),
``maintenance`` (abort, locks, gc); what they share in ``common``. Loading a runbook and its
inventory is the run layer's (``engine.run.load``)."""

from __future__ import annotations

from engine.api.approvals import approve
from engine.api.approvals import payload as approval_payload
from engine.api.audit import journal, sign_head, verify_journal
from engine.api.common import current_user, get_run, new_run_id
from engine.api.maintenance import ABORT_WAIT, abort, gc, release_lock
from engine.api.queries import (
    board,
    cannot_succeed,
    change_record,
    drift,
    history,
    history_kinds,
    locks,
    run_detail,
    status,
    validate,
)
from engine.api.runs import plan, replan, resume, run
from engine.run.load import load_inventory, load_runbook, password_envs, redactor_for
from engine.views.records import (
    AbortResult,
    ChangeRecord,
    DeadEnd,
    GcResult,
    PlanReport,
    RunDetail,
)

__all__ = [
    "ABORT_WAIT",
    "AbortResult",
    "ChangeRecord",
    "DeadEnd",
    "GcResult",
    "PlanReport",
    "RunDetail",
    "abort",
    "approval_payload",
    "approve",
    "board",
    "cannot_succeed",
    "change_record",
    "current_user",
    "drift",
    "gc",
    "get_run",
    "history",
    "history_kinds",
    "journal",
    "load_inventory",
    "load_runbook",
    "locks",
    "new_run_id",
    "password_envs",
    "plan",
    "redactor_for",
    "release_lock",
    "replan",
    "resume",
    "run",
    "run_detail",
    "sign_head",
    "status",
    "validate",
    "verify_journal",
]
