"""Whether resuming a stopped run can still make it succeed.

A step marked ``failure_is_final`` checks something its failure takes away: a hotfix's
verification checks that staging runs the hotfix, and its ``on_failure`` steps roll staging
back. Once it failed and those steps ran, resuming would only fail again: the run is to be
aborted and started afresh, and the operator is told so instead of being invited to resume.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.language.model import Runbook
from engine.status import StepStatus
from engine.store import StepRecord


def undone_by(book: Runbook, steps: Mapping[str, StepRecord]) -> tuple[str, list[str]] | None:
    """The failed final step and the ``on_failure`` steps that undid it (not those that only
    told people); None when resuming the run may still succeed."""
    from engine.steps import STEP_TYPES

    for step in book.all_steps():
        record = steps.get(step.id)
        if record is None or record.status != StepStatus.FAILED or not step.failure_is_final:
            continue
        undo = [s.id for s in step.on_failure]
        if all((r := steps.get(i)) is not None and r.status == StepStatus.OK for i in undo):
            return step.id, [s.id for s in step.on_failure if not STEP_TYPES[s.type].informs]
    return None
