"""``set``: name values (facts) for the steps after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import StepType

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    return Outcome(StepStatus.OK, dict(ctx.spec))


def describe(spec: Mapping[str, Any]) -> list[str]:
    return [f"set {k} = {v!r}" for k, v in spec.items()]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": "^[a-z_][a-z0-9_]*$"},
}

TYPE = StepType("set", run, describe, SCHEMA, sets_facts=True)
