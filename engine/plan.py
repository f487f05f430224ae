"""Runbook + params + inventory + checkpoints → Plan. Pure: no I/O, no clock.

Every template that can be rendered before the first step runs is rendered here, so an
undefined name or a sandbox escape stops the run before anything happens. Templates that
need a result registered by an earlier step are marked deferred and rendered at run time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInput
from engine.model import Check, Inventory, Runbook, Step
from engine.render import Deferred, Pending, condition, render_text, render_value
from engine.secrets import Redactor
from engine.store import StepRecord

# Fields a step type evaluates itself, at run time, each time it needs them.
CONDITION_FIELDS = {"assert": ("that",), "wait": ("until",)}
DONE = ("ok", "skipped")


@dataclass(frozen=True)
class PlannedStep:
    step: Step
    depth: int
    name: str
    when: bool | None  # None: decided at run time
    rendered: Mapping[str, Any] | None  # None: deferred to run time
    deferred_on: str | None
    fingerprint: str | None
    done: bool
    # An approval step's checklist, known even when the rest of it waits for a result (the
    # gates a run must pass are known before it starts).
    items: Any = None


@dataclass(frozen=True)
class Plan:
    runbook: Runbook
    inventory: Inventory
    params: Mapping[str, Any]  # secrets redacted
    hash: str
    variables: Mapping[str, Any]  # template context before any step has run
    steps: tuple[PlannedStep, ...]  # flattened: on_failure steps follow their step
    redactor: Redactor
    lock_env: str | None = None
    bound: Mapping[str, Any] = field(default_factory=dict)  # resolved by a dry run or a run

    def step(self, step_id: str) -> PlannedStep:
        return next(p for p in self.steps if p.step.id == step_id)


def plan_hash(runbook: Runbook, inventory: Inventory, params: Mapping[str, Any],
              bound: Mapping[str, Any] | None = None) -> str:
    """What an approval of a plan is for: the runbook, the inventory, the params and what the
    runbook binds (the image's digest, the target's revision) as resolved."""
    payload: dict[str, Any] = {"runbook": runbook.sha256, "inventory": inventory.sha256,
                               "params": params}
    if bound:
        payload["bound"] = bound
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def bind(runbook: Runbook, context: Mapping[str, Any]
         ) -> tuple[dict[str, Any], dict[str, str]]:
    """The runbook's ``metadata.bind`` rendered with what the steps so far registered, and
    for each one that needs a result not known yet, the name of that result."""
    values: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name, template in runbook.bind.items():
        try:
            values[name] = _render_checked(template, context, runbook, f"$.metadata.bind.{name}")
        except Deferred as exc:
            missing[name] = exc.name
    return values, missing


def fingerprint(step: Step, rendered: Mapping[str, Any], name: str) -> str:
    payload = {"type": step.type, "spec": rendered, "name": name, "when": step.when,
               "register": step.register}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def is_done(step: Step, record: StepRecord | None, step_fingerprint: str | None) -> bool:
    """A checkpoint counts only if it finished and was made from the same rendered step."""
    return (not step.fresh and record is not None and record.status in DONE
            and step_fingerprint is not None and record.fingerprint == step_fingerprint)


def base_context(runbook: Runbook, inventory: Inventory, params: Mapping[str, Any],
                 run: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    context: dict[str, Any] = {"params": dict(params), "inventory": dict(inventory.data),
                               "run": dict(run), "facts": {}, "secret_env": redactor.secret_env}
    for check in runbook.checks:
        _check(check, context, runbook)
    rendered_vars: dict[str, Any] = {}
    context["vars"] = rendered_vars
    for key, value in runbook.vars.items():
        rendered_vars[key] = _render_checked(value, context, runbook, f"$.vars.{key}")
    return context


def build(runbook: Runbook, inventory: Inventory, params: Mapping[str, Any],
          run: Mapping[str, Any], checkpoints: Mapping[str, StepRecord],
          redactor: Redactor) -> Plan:
    variables = base_context(runbook, inventory, params, run, redactor)
    context = dict(variables)
    context["facts"] = {}
    context.update(pending_results(runbook))
    planned: list[PlannedStep] = []
    seen: set[str] = set()

    def walk(steps: tuple[Step, ...], depth: int) -> None:
        for step in steps:
            if step.id in seen:  # an on_failure step shared by several steps
                continue
            seen.add(step.id)
            planned.append(_plan_step(step, depth, context, checkpoints, runbook, redactor))
            walk(step.on_failure, depth + 1)

    walk(runbook.steps, 0)
    lock_env = None
    if runbook.lock:
        lock_env = str(_render_checked(runbook.lock, variables, runbook, "$.metadata.lock"))
    if runbook.gated:
        _check_required_gates(runbook, inventory, lock_env, planned)
    return Plan(runbook=runbook, inventory=inventory, params=redactor.params(params),
                hash=plan_hash(runbook, inventory, redactor.params(params)), variables=variables,
                steps=tuple(planned), redactor=redactor, lock_env=lock_env)


def _plan_step(step: Step, depth: int, context: dict[str, Any],
               checkpoints: Mapping[str, StepRecord], runbook: Runbook,
               redactor: Redactor) -> PlannedStep:
    where = f"$.steps[{step.id}]"
    when: bool | None = True
    name = step.name
    rendered: Mapping[str, Any] | None = None
    deferred_on: str | None = None
    try:
        seen = step_context(step, context, runbook)
        if step.when is not None:
            when = _checked(lambda: condition(step.when, seen, where + ".when"), runbook, step)
    except Deferred as exc:
        when, deferred_on = None, exc.name
    if when is not False and deferred_on is None:
        try:  # a skipped step's templates may use what its condition says is missing
            name = str(_checked(lambda: render_value(step.name, seen, where + ".name"),
                                runbook, step))
            rendered = render_spec(step, seen, runbook)
        except Deferred as exc:
            deferred_on = exc.name
    fp = fingerprint(step, redactor.value(rendered), name) if rendered is not None else None
    record = checkpoints.get(step.id)
    done = when is not None and is_done(step, record, fp)
    if done and record is not None:
        remember(step, record.result, context)
        note_step(context, step, record)
    elif when is False:
        put(context, step, {"skipped": True})
    elif step.type == "set":
        if when and rendered is not None:
            context["facts"].update(rendered)
        else:
            pending(step, context)
    items = (rendered or {}).get("items")
    if step.type == "approval" and rendered is None and when is True:
        with contextlib.suppress(Deferred):
            items = _checked(lambda: render_value(step.spec.get("items"), seen,
                                                  f"$.steps[{step.id}].approval.items"),
                             runbook, step)
    return PlannedStep(step=step, depth=depth, name=name, when=when, rendered=rendered,
                       deferred_on=deferred_on, fingerprint=fp, done=done, items=items)


def render_spec(step: Step, context: Mapping[str, Any], runbook: Runbook) -> dict[str, Any]:
    """Render a step's body; condition fields are only checked for names, not rendered."""
    where = f"$.steps[{step.id}].{step.type}"
    skip = CONDITION_FIELDS.get(step.type, ())
    spec = step.spec if isinstance(step.spec, Mapping) else {}
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in skip:
            for cond in value if isinstance(value, list) else [value]:
                with contextlib.suppress(Deferred):
                    polled = {**context, "poll": Pending("poll")}
                    _checked(lambda c=cond, k=key, p=polled: condition(c, p, f"{where}.{k}"),
                             runbook, step)
            out[key] = value
        else:
            out[key] = _checked(lambda v=value, k=key: render_value(v, context, f"{where}.{k}"),
                                runbook, step)
    return out


def pending_results(runbook: Runbook) -> dict[str, Any]:
    """What templates see before any step has run: every registered result and ``steps.ID``
    pending. A fragment's steps are reached through their include: ``GROUP.REGISTER`` and
    ``steps.GROUP.ID``."""
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
    """``steps.ID`` (``steps.GROUP.ID`` for a fragment's step): status and times."""
    value = {"status": record.status, "started_at": record.started_at,
             "ended_at": record.ended_at}
    steps = context["steps"]
    if step.group is None:
        steps[step.id] = value
    else:
        steps[step.group] = {**steps.get(step.group, {}), str(step.local_id): value}


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


def _checked(fn: Any, runbook: Runbook, step: Step) -> Any:
    try:
        return fn()
    except InvalidInput as exc:
        raise InvalidInput(exc.message, file=step.file or str(runbook.path),
                           line=step.line_of(exc.path), path=exc.path) from exc


def step_context(step: Step, context: Mapping[str, Any], runbook: Runbook) -> dict[str, Any]:
    """What a step's templates see: for a fragment's step, also its ``args`` and ``local``
    (the results its fragment's own steps registered, by their names in the fragment)."""
    if step.group is None:
        return dict(context)
    args = _checked(lambda: render_value(dict(step.args or {}), context,
                                         f"$.steps[{step.id}].with"), runbook, step)
    return {**context, "args": args, "local": dict(context.get(step.group) or {})}


def _check_required_gates(runbook: Runbook, inventory: Inventory, lock_env: str | None,
                          planned: list[PlannedStep]) -> None:
    """A gated runbook into an environment with required gates (live: cab) must have them."""
    from engine.gates import items_of

    present = {str(i.spec.get("gate")) for p in planned if p.step.type == "approval"
               for i in items_of(p.items) if i.kind == "approval"}
    environments = inventory.data.get("environments") or {}
    for env in (lock_env or "").split(","):
        required = (environments.get(env.strip()) or {}).get("required_gates") or []
        missing = [g for g in required if g not in present]
        if missing:
            raise InvalidInput(f"a run into {env.strip()} needs the {', '.join(missing)} gate, "
                               f"and runbook {runbook.name} has none for it",
                               file=str(runbook.path))


def _check(check: Check, context: Mapping[str, Any], runbook: Runbook) -> None:
    """A runbook-level check: if it does not hold, its message is the invalid-input error."""
    try:
        holds = condition(check.that, context, "$.checks")
        message = "" if holds else render_text(check.message, context, "$.checks")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, file=str(runbook.path), line=check.line,
                           path="$.checks") from exc
    if not holds:
        raise InvalidInput(message)


def _render_checked(value: Any, context: Mapping[str, Any], runbook: Runbook, where: str) -> Any:
    try:
        return render_value(value, context, where)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, file=str(runbook.path), path=exc.path) from exc
