"""``assert``: every condition must hold, or the step fails with the message (or, with
``refuse: true``, the run is refused as invalid input)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import StepFailed, StepRefused
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    if ctx.dry_run and not ctx.spec.get("refuse"):
        # It checks what earlier steps did, and a dry run did not do it. A refusing assert
        # checks a precondition: that one is evaluated in the plan too.
        return Outcome("would-run", message="checks: " + "; ".join(map(str, ctx.spec["that"])))
    for cond in ctx.spec["that"]:
        if not ctx.condition(cond):
            message = str(ctx.spec.get("message") or f"assertion failed: {cond}")
            raise StepRefused(message) if ctx.spec.get("refuse") else StepFailed(message)
    return Outcome("ok", {"passed": len(ctx.spec["that"])})
