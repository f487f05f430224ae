"""``analysis``: verify a release by its monitoring. Runs one of the inventory's analysis
templates (``monitoring.analyses``) against its Prometheus (``monitoring.prometheus``), with
``args`` (the environment, the image it runs) rendering the queries: the step fails when a
metric fails (more failed measurements than its ``failureLimit``) or has no answer too many
times in a row. Every value measured, with its time, is the step's result either way, so the
change record shows what was seen. See engine/steps/monitoring.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps import monitoring as analysis
from engine.steps.base import StepType

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    inventory = ctx.variables.get("inventory") or {}
    monitoring = inventory.get("monitoring") or {}
    name = str(ctx.spec["template"])
    args = dict(ctx.spec.get("args") or {})
    if not monitoring.get("prometheus"):
        raise StepFailed(f"analysis {name}: the inventory names no Prometheus "
                         "(monitoring.prometheus)")
    analysis.template(monitoring, name)  # an unknown template is refused, in a plan too
    if ctx.dry_run:
        return Outcome(StepStatus.WOULD_RUN, message=f"measures analysis {name} against "
                                            f"{monitoring['prometheus']}")
    found = analysis.analyse(monitoring, name, args, inventory, clock=ctx.clock)
    for metric in found.data["metrics"]:
        for taken in metric["measurements"]:
            shown = taken["value"] if taken["value"] is not None else taken.get("message")
            ctx.emit(f"{metric['name']} at {taken['at']}: {shown} ({taken['phase']})")
    result = {"passed": found.passed, "summary": found.detail, **found.data}
    if not found.passed:
        raise StepFailed(found.detail, result)
    return Outcome(StepStatus.OK, result, message=found.detail)


def describe(spec: Mapping[str, Any]) -> list[str]:
    args = ", ".join(f"{k}={v}" for k, v in (spec.get("args") or {}).items())
    return [f"measures the analysis {spec['template']}" + (f" ({args})" if args else "")
            + " against the inventory's Prometheus"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["template"],
    "properties": {
        "template": {
            "$ref": "#/$defs/template",
            "description": "the analysis template's name (the inventory's monitoring.analyses)",
        },
        "args": {
            "type": "object",
            "description": (
                "the values the template's queries are rendered with, as args.NAME (env, image)"
            ),
            "additionalProperties": {"$ref": "#/$defs/template"},
        },
    },
}

TYPE = StepType("analysis", run, describe, SCHEMA)
