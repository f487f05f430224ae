"""``record``: add an entry to the environment history (promotions, rollbacks, restores)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.clock import iso
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import STORE, StepType
from engine.store import HistoryRecord

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    data = dict(spec.get("data") or {})
    if ctx.dry_run or ctx.store is None:
        return Outcome(StepStatus.WOULD_RUN, message=f"records a {spec['kind']} of {spec['env']}")
    record = HistoryRecord(at=iso(ctx.clock.now()), run_id=ctx.run_id,
                           user=str(ctx.variables["run"]["user"]), kind=str(spec["kind"]),
                           env=str(spec["env"]), data=data)
    ctx.store.add_history(record)
    # The entry's data is the history's row (and its journal record): not repeated here.
    return Outcome(StepStatus.OK, {"at": record.at, "kind": record.kind, "env": record.env},
                   message=f"recorded a {record.kind} of {record.env}")


def describe(spec: Mapping[str, Any]) -> list[str]:
    return [f"records a {spec['kind']} of {spec['env']} in the history"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "env"],
    "properties": {
        "kind": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"},
        "env": {"$ref": "#/$defs/template"},
        "data": {"type": "object"},
    },
}

TYPE = StepType("record", run, describe, SCHEMA, needs=frozenset({STORE}))
