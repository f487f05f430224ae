"""Whether resuming a stopped run can still make it succeed.

A failed step whose ``on_failure`` steps all ran has been undone (a hotfix's staging rolled
back to what it ran before): what the rest of the run needs is gone, and resuming would only
fail again. Such a run is to be aborted and started afresh, and the operator is told so
instead of being invited to resume it.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.model import Runbook
from engine.store import StepRecord


def undone_by(book: Runbook, steps: Mapping[str, StepRecord]) -> tuple[str, list[str]] | None:
    """The failed step and the ``on_failure`` steps that undid it, if a failed run was
    rolled back; None when resuming it may still succeed."""
    for step in book.all_steps():
        record = steps.get(step.id)
        if record is None or record.status != "failed" or not step.on_failure:
            continue
        undo = [s.id for s in step.on_failure]
        if all((r := steps.get(i)) is not None and r.status == "ok" for i in undo):
            return step.id, undo
    return None
