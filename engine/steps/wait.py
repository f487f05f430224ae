"""``wait``: sleep for a time, or poll a condition (optionally re-running a command) until a
timeout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import StepType
from engine.steps.command import argv_of
from engine.system import proc

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    if ctx.dry_run:
        what = (f"{spec['seconds']} s" if "seconds" in spec
                else f"until {spec['until']} (at most {spec['timeout']} s)")
        return Outcome(StepStatus.WOULD_RUN, message=f"waits {what}")
    if "seconds" in spec:
        ctx.clock.sleep(float(spec["seconds"]))
        return Outcome(StepStatus.OK, {"waited": float(spec["seconds"])})
    start = ctx.clock.monotonic()
    interval = float(spec.get("interval", 2))
    polls = 0
    while True:
        polls += 1
        poll: dict[str, Any] = {}
        if "argv" in spec:
            done = proc.run(argv_of(spec["argv"]), timeout=spec["timeout"],
                            run_id=ctx.run_id)
            poll = {"rc": done.rc, "stdout": done.stdout, "stderr": done.stderr}
        if ctx.condition(spec["until"], {"poll": poll}):
            waited = round(ctx.clock.monotonic() - start, 3)
            return Outcome(StepStatus.OK, {"polls": polls, "waited": waited, "poll": poll})
        if ctx.clock.monotonic() - start + interval > float(spec["timeout"]):
            raise StepFailed(f"still not {spec['until']} after {spec['timeout']} s "
                             f"({polls} polls)", {"polls": polls, "poll": poll})
        ctx.clock.sleep(interval)


def describe(spec: Mapping[str, Any]) -> list[str]:
    if "seconds" in spec:
        return [f"wait {spec['seconds']} s"]
    return [f"wait until {spec['until']} (at most {spec['timeout']} s)"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "seconds": {"type": "number", "minimum": 0},
        "until": {"$ref": "#/$defs/condition"},
        "argv": {"$ref": "#/$defs/argv"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "interval": {"type": "number", "exclusiveMinimum": 0},
    },
    "oneOf": [{"required": ["seconds"]}, {"required": ["until", "timeout"]}],
}

TYPE = StepType("wait", run, describe, SCHEMA, condition_fields=("until",))
