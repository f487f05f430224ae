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
from engine.language.model import Check, Inventory, Runbook, Step
from engine.language.render import Deferred, condition, render_text, render_value
from engine.run.evaluate import (
    checked,
    evaluate,
    pending,
    pending_results,
    remember_done,
    skip,
)
from engine.steps import STEP_TYPES
from engine.store import StepRecord
from engine.trust.secrets import Redactor


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
    for each one that needs a result not known yet, the name of that result. A value that
    renders to none binds nothing (what a runbook binds only sometimes)."""
    values: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name, template in runbook.bind.items():
        try:
            value = _render_checked(template, context, runbook, f"$.metadata.bind.{name}")
        except Deferred as exc:
            missing[name] = exc.name
            continue
        if value is not None:
            values[name] = value
    return values, missing


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
    record = checkpoints.get(step.id)
    ev = evaluate(step, context, runbook, redactor, record)
    kind = STEP_TYPES[step.type]
    if ev.done and record is not None:
        remember_done(step, record, context)
    elif ev.when is False:
        skip(step, context)
    elif kind.sets_facts:  # known in the plan from its rendered body, without running it
        if ev.when and ev.spec is not None:
            context["facts"].update(ev.spec)
        else:
            pending(step, context)
    items = (ev.spec or {}).get("items")
    if kind.gate and ev.spec is None and ev.when is True:
        with contextlib.suppress(Deferred):
            items = checked(lambda: render_value(step.spec.get("items"), ev.seen,
                                                 f"$.steps[{step.id}].approval.items"),
                            runbook, step)
    return PlannedStep(step=step, depth=depth, name=ev.name, when=ev.when, rendered=ev.spec,
                       deferred_on=ev.deferred_on, fingerprint=ev.fingerprint, done=ev.done,
                       items=items)


def _check_required_gates(runbook: Runbook, inventory: Inventory, lock_env: str | None,
                          planned: list[PlannedStep]) -> None:
    """A gated runbook into an environment with required gates (live: cab) must have them."""
    from engine.trust.gates import items_of

    present = {str(i.spec.get("gate")) for p in planned if STEP_TYPES[p.step.type].gate
               for i in items_of(p.items) if i.kind == "approval"}
    environments = inventory.environments
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
