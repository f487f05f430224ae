"""``set``: name values (facts) for the steps after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    return Outcome("ok", dict(ctx.spec))
