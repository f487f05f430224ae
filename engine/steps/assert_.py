"""``assert``: every condition must hold, or the step fails with the message (or, with
``refuse: true``, the run is refused as invalid input)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed, StepRefused
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import StepType

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    if ctx.dry_run and not ctx.spec.get("refuse"):
        # It checks what earlier steps did, and a dry run did not do it. A refusing assert
        # checks a precondition: that one is evaluated in the plan too.
        return Outcome(StepStatus.WOULD_RUN,
                       message="checks: " + "; ".join(map(str, ctx.spec["that"])))
    for cond in ctx.spec["that"]:
        if not ctx.condition(cond):
            message = str(ctx.spec.get("message") or f"assertion failed: {cond}")
            raise StepRefused(message) if ctx.spec.get("refuse") else StepFailed(message)
    return Outcome(StepStatus.OK, {"passed": len(ctx.spec["that"])})


def describe(spec: Mapping[str, Any]) -> list[str]:
    return [f"check: {c}" for c in spec["that"]]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["that"],
    "properties": {
        "that": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
        "message": {"$ref": "#/$defs/template"},
        "refuse": {
            "type": "boolean",
            "description": (
                "a failed condition refuses the run as invalid input (exit 2) instead of failing "
                "it"
            ),
        },
    },
}

TYPE = StepType("assert", run, describe, SCHEMA, condition_fields=("that",))
