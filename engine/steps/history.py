"""``history``: read what the environment history recorded of an environment: its last change
(a promotion, a hotfix or a rollback), or the change a given run made there. Read-only, so a
plan reads it too, and shows what a rollback would go back to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import STORE, StepType
from engine.trust.gates import CHANGE_KINDS

if TYPE_CHECKING:
    from engine.steps.base import StepContext

SEARCHED = 1000  # records of the environment looked through for a given run's change


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    env, wanted = str(spec["env"]), str(spec.get("run") or "")
    records = ctx.store.history(env=env, limit=SEARCHED if wanted else 50) if ctx.store else []
    found = next((h for h in records if h.kind in CHANGE_KINDS
                  and (not wanted or h.run_id == wanted)), None)
    if found is None:
        if wanted:
            raise StepFailed(f"run {wanted} recorded no change of {env} (among its last "
                             f"{SEARCHED} records)")
        return Outcome(StepStatus.OK, {"found": False, "env": env},
                       message=f"no change of {env} is recorded")
    return Outcome(StepStatus.OK, {"found": True, "env": env, "run_id": found.run_id,
                                   "at": found.at, "kind": found.kind, "user": found.user,
                                   "data": dict(found.data)},
                   message=f"the {found.kind} of {env} at {found.at} by run {found.run_id}")


def describe(spec: Mapping[str, Any]) -> list[str]:
    which = f"the change run {spec['run']} made" if spec.get("run") else "the last change"
    return [f"reads {which} of {spec['env']} in the history"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["env"],
    "properties": {
        "env": {"$ref": "#/$defs/template"},
        "run": {"$ref": "#/$defs/template"},
    },
}

TYPE = StepType("history", run, describe, SCHEMA, needs=frozenset({STORE}),
                summary="read an environment's last recorded change, or a given run's")
