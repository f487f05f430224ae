"""``assert``: every condition must hold, or the step fails with the message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import StepFailed, StepRefused
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    for cond in ctx.spec["that"]:
        if not ctx.condition(cond):
            message = str(ctx.spec.get("message") or f"assertion failed: {cond}")
            raise StepRefused(message) if ctx.spec.get("refuse") else StepFailed(message)
    return Outcome("ok", {"passed": len(ctx.spec["that"])})
