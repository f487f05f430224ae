"""``record``: add an entry to the environment history (promotions, rollbacks, restores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.clock import iso
from engine.model import Outcome
from engine.store import HistoryRecord

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    data = dict(spec.get("data") or {})
    if ctx.dry_run or ctx.store is None:
        return Outcome("would-run", message=f"records a {spec['kind']} of {spec['env']}")
    record = HistoryRecord(at=iso(ctx.clock.now()), run_id=ctx.run_id,
                           user=str(ctx.variables["run"]["user"]), kind=str(spec["kind"]),
                           env=str(spec["env"]), data=data)
    ctx.store.add_history(record)
    return Outcome("ok", {"at": record.at, "kind": record.kind, "env": record.env, **data})
