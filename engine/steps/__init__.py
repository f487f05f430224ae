"""Step types: one module each, listed here by the key that names them in YAML.

A step type's module holds all the engine knows of it in one ``StepType`` record (see
``base.py``): its ``run(ctx) -> Outcome``, the JSON Schema of its body, its condition fields,
how a plan describes it, whether it has named outputs and what it may use besides its body.
A step type raises ``StepFailed`` or ``StepRetryable`` on failure and leaves retrying to the
executor. Adding one is adding its module to ``_MODULES`` (and ``scripts/step-schemas.py``
writes its schema into ``schemas/runbook.schema.json``).
"""

from __future__ import annotations

import copy
from typing import Any

from engine.steps import (
    analysis,
    approval,
    assert_,
    command,
    history,
    notify,
    record,
    set_,
    wait,
)
from engine.steps.ansible import step as ansible
from engine.steps.base import StepContext, StepType

_MODULES = (command, ansible, assert_, set_, wait, approval, record, history, notify,
            analysis)

STEP_TYPES: dict[str, StepType] = {m.TYPE.key: m.TYPE for m in _MODULES}

__all__ = ["STEP_TYPES", "StepContext", "StepType", "finish_all", "with_step_types"]


def finish_all(*, at_once: bool = False) -> None:
    """End what each step type started for the run (its ``finish`` hook): as a run ends, and
    ``at_once`` for a run refused before it executed."""
    for step_type in STEP_TYPES.values():
        if step_type.finish is not None:
            step_type.finish(at_once)


def with_step_types(runbook_schema: dict[str, Any]) -> dict[str, Any]:
    """The runbook JSON Schema with each step type's body schema from its module: what
    ``schemas/runbook.schema.json`` must say (``scripts/step-schemas.py`` writes it)."""
    doc = copy.deepcopy(runbook_schema)
    defs = doc["$defs"]
    step = defs["step"]
    for key, step_type in STEP_TYPES.items():
        defs[key] = copy.deepcopy(dict(step_type.schema))
        step["properties"][key] = {"$ref": f"#/$defs/{key}"}
    others = [c for c in step["oneOf"] if next(iter(c["required"])) not in STEP_TYPES]
    step["oneOf"] = [{"required": [key]} for key in STEP_TYPES] + others
    return doc
