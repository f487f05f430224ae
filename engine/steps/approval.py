"""``approval``: the run stops (exit 3) until ``runbook approve`` records a person's approval."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import WaitingForApproval
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    prompt = str(ctx.spec["prompt"])
    if ctx.dry_run:
        return Outcome("would-run", message=f"waits for approval: {prompt}")
    mine = [a for a in ctx.approvals if a.step_id == ctx.step.id]
    if not mine:
        raise WaitingForApproval(ctx.step.id, prompt)
    first = mine[0]
    return Outcome("ok", {"by": first.by, "at": first.at, "note": first.note},
                   message=f"approved by {first.by}")
