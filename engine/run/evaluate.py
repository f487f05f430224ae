"""The one evaluation of a step before it runs: when → render → fingerprint → done.

The planner (``plan.py``) and the executor (``execute.py``) both ask ``evaluate`` what a step
is, and both tell this module what a step left for the steps after it (``remember``,
``skip``, ``pending``), so a plan and a run never disagree on whether a step is skipped,
waits for a result, or was already done by an earlier attempt.

What templates see: ``params``, ``inventory``, ``run``, ``vars``, ``facts``, each step's
registered result by its ``register`` name (an ansible step's named outputs under
``outputs``), ``steps.ID`` (status and times), and for a fragment's steps, their include:
``INCLUDE.REGISTER`` and ``steps.INCLUDE.ID``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from engine.errors import InvalidInput
from engine.language.model import Runbook, Step
from engine.language.render import Deferred, Pending, condition, render_value
from engine.status import STEP_DONE
from engine.steps import STEP_TYPES
from engine.store import StepRecord
from engine.trust.secrets import Redactor

T = TypeVar("T")


@dataclass(frozen=True)
class Evaluation:
    """What a step is, given what the steps before it left."""

    when: bool | None  # None: its condition needs a result not known yet
    name: str
    spec: Mapping[str, Any] | None  # rendered body; None when skipped or deferred
    shown: Mapping[str, Any] | None  # the same with the run's secrets masked
    fingerprint: str | None
    deferred_on: str | None  # the result it needs that is not known yet
    done: bool  # a checkpoint of this very step says it finished
    seen: Mapping[str, Any]  # what its templates saw


def evaluate(step: Step, context: Mapping[str, Any], runbook: Runbook, redactor: Redactor,
             record: StepRecord | None) -> Evaluation:
    """Raises InvalidInput (naming the file and line) for a template that cannot render."""
    where = f"$.steps[{step.id}]"
    seen: Mapping[str, Any] = context
    name = step.name
    decided = False  # whether it runs
    try:
        if step.include_when is not None and not checked(
                lambda: condition(step.include_when, context, where + ".when"), runbook, step):
            return Evaluation(False, name, None, None, None, None, False, seen)
        seen = step_context(step, context, runbook)
        if step.when is not None and not checked(
                lambda: condition(step.when, seen, where + ".when"), runbook, step):
            return Evaluation(False, name, None, None, None, None, False, seen)
        decided = True
        # A skipped step's templates may use what its condition says is missing: only now.
        name = str(checked(lambda: render_value(step.name, seen, where + ".name"),
                           runbook, step))
        spec = render_spec(step, seen, runbook)
    except Deferred as exc:
        return Evaluation(True if decided else None, name, None, None, None, exc.name, False, seen)
    shown = redactor.value(spec)
    fp = fingerprint(step, shown, name)
    return Evaluation(True, name, spec, shown, fp, None, is_done(step, record, fp), seen)


def fingerprint(step: Step, rendered: Mapping[str, Any], name: str) -> str:
    payload = {"type": step.type, "spec": rendered, "name": name, "when": step.when,
               "register": step.register}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def is_done(step: Step, record: StepRecord | None, step_fingerprint: str | None) -> bool:
    """A checkpoint counts only if it finished and was made from the same rendered step."""
    return (not step.fresh and record is not None and record.status in STEP_DONE
            and step_fingerprint is not None and record.fingerprint == step_fingerprint)


def render_spec(step: Step, context: Mapping[str, Any], runbook: Runbook) -> dict[str, Any]:
    """Render a step's body; condition fields are only checked for names, not rendered: the
    step type evaluates them itself, at run time, each time it needs them."""
    where = f"$.steps[{step.id}].{step.type}"
    skip = STEP_TYPES[step.type].condition_fields
    spec = step.spec if isinstance(step.spec, Mapping) else {}
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in skip:
            for cond in value if isinstance(value, list) else [value]:
                with contextlib.suppress(Deferred):
                    polled = {**context, "poll": Pending("poll")}
                    checked(partial(condition, cond, polled, f"{where}.{key}"), runbook, step)
            out[key] = value
        else:
            out[key] = checked(partial(render_value, value, context, f"{where}.{key}"),
                               runbook, step)
    return out


def step_context(step: Step, context: Mapping[str, Any], runbook: Runbook) -> dict[str, Any]:
    """What a step's templates see: for a fragment's step, also its ``args`` and ``local``
    (the results its fragment's own steps registered, by their names in the fragment)."""
    if step.group is None:
        return dict(context)
    args = checked(lambda: render_value(dict(step.args or {}), context,
                                        f"$.steps[{step.id}].with"), runbook, step)
    return {**context, "args": args, "local": dict(context.get(step.group) or {})}


def checked(fn: Callable[[], T], runbook: Runbook, step: Step) -> T:
    """``fn()``, with a template error pointed at the step's file and line."""
    try:
        return fn()
    except InvalidInput as exc:
        raise InvalidInput(exc.message, file=step.file or str(runbook.path),
                           line=step.line_of(exc.path), path=exc.path) from exc


def pending_results(runbook: Runbook) -> dict[str, Any]:
    """What templates see before any step has run: every registered result and ``steps.ID``
    not known yet."""
    steps: dict[str, Any] = {}
    out: dict[str, Any] = {"steps": steps}
    for step in runbook.all_steps():
        if step.group is None:
            steps[step.id] = Pending(f"steps.{step.id}")
        else:
            steps.setdefault(step.group, {})[step.local_id] = \
                Pending(f"steps.{step.group}.{step.local_id}")
            out.setdefault(step.group, {})
        if step.register:
            put(out, step, Pending(result_name(step)))
    return out


def result_name(step: Step) -> str:
    """How templates name what ``step`` registers."""
    return f"{step.group}.{step.register}" if step.group else str(step.register)


def put(context: dict[str, Any], step: Step, value: Any) -> None:
    """Set what ``step`` registers, if it registers anything."""
    if not step.register:
        return
    if step.group is None:
        context[step.register] = value
    else:
        context[step.group] = {**context.get(step.group, {}), step.register: value}


def note_step(context: dict[str, Any], step: Step, record: StepRecord) -> None:
    """``steps.ID`` (``steps.INCLUDE.ID`` for a fragment's step): status and times."""
    value = {"status": record.status, "started_at": record.started_at,
             "ended_at": record.ended_at}
    steps = context["steps"]
    if step.group is None:
        steps[step.id] = value
    else:
        steps[step.group] = {**steps.get(step.group, {}), str(step.local_id): value}


def skip(step: Step, context: dict[str, Any]) -> None:
    """Its condition was false: what it registers says so."""
    put(context, step, {"skipped": True})


def pending(step: Step, context: dict[str, Any]) -> None:
    """What ``step`` would register or set is not known yet (it did not run, or only would)."""
    put(context, step, Pending(result_name(step)))
    if step.type == "set":
        context["facts"].update({k: Pending(f"facts.{k}") for k in step.spec})


def remember(step: Step, result: Mapping[str, Any], context: dict[str, Any]) -> None:
    """Make a finished step's result visible to the steps after it. A declared output a dry
    run could not learn (its playbook's tasks did not run in check mode) is not known yet."""
    value = dict(result)
    if step.outputs:
        known = dict(value.get("outputs") or {})
        value["outputs"] = {**{name: Pending(f"{result_name(step)}.outputs.{name}")
                               for name in step.outputs if name not in known}, **known}
    put(context, step, value)
    if step.type == "set":
        context["facts"].update(result)


def remember_done(step: Step, record: StepRecord, context: dict[str, Any]) -> None:
    """A step an earlier attempt finished: its result and status, as checkpointed."""
    remember(step, record.result, context)
    note_step(context, step, record)
