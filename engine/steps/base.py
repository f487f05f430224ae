"""What a step type is: one record in its own module, and what it is given when it runs.

A step type's module holds everything the engine knows of it: how it runs, the JSON Schema of
its body, the fields it evaluates itself as conditions, how a plan describes it, whether it
declares named outputs, and what it may use beyond its rendered body (the state store, the
run's approvals). ``engine/steps/__init__.py`` lists the modules; nothing else names a type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.clock import Clock
from engine.language.model import Inventory, Outcome, Step
from engine.language.render import condition
from engine.store import ApprovalRecord, StateStore

# What a step type may be given besides its body, each only to the types that ask for it.
STORE = "store"  # the state store (history, approvals of plans)
APPROVALS = "approvals"  # the run's approvals, and what a gate compares plan approvals with


@dataclass(frozen=True)
class StepType:
    key: str  # the step's key in YAML: `command:`, `ansible:`
    run: Callable[[StepContext], Outcome]
    describe: Callable[[Mapping[str, Any]], list[str]]  # the plan's lines for a rendered body
    schema: Mapping[str, Any]  # JSON Schema of the body ($defs.KEY of runbook.schema.json)
    summary: str = ""  # one line, for the schema's description
    # Body fields that are conditions: checked for names in the plan, evaluated by the step
    # type itself at run time, each time it needs them (never rendered once up front).
    condition_fields: tuple[str, ...] = ()
    outputs: bool = False  # declares named outputs (REGISTER.outputs.NAME)
    sets_facts: bool = False  # its rendered body becomes `facts` for the steps after it
    gate: bool = False  # counts approvals: what the run binds is resolved before it
    # What would stop its rendered body from even starting (a program or folder that does
    # not exist), checked before a run is recorded or takes a lock; None when nothing would.
    preflight: Callable[[Mapping[str, Any]], str | None] | None = None
    # What its rendered body needs from the inventory and the environment (a variable the
    # inventory names, set), checked with ``preflight``: raises InvalidInput naming the
    # inventory's file and line.
    check: Callable[[Mapping[str, Any], Inventory], None] | None = None
    # The values of the environment it would use, as the inventory names them, that are
    # secrets (a webhook URL holding a token): masked in every run of that inventory.
    secrets: Callable[[Mapping[str, Any]], list[str]] | None = None
    needs: frozenset[str] = frozenset()
    # Only tells people (a message): among a failure's on_failure steps, it undoes nothing.
    informs: bool = False
    # What a run whose steps include this type may start ahead, given the run id and the
    # run's steps still to do with the folder each is written in (the warm Ansible worker);
    # it never fails: what went wrong shows when a step of the type runs.
    prepare: Callable[[str, Sequence[tuple[Step, Path]]], None] | None = None
    # What ends with the run: whatever the type started ahead or for it (the warm Ansible
    # worker). ``at_once``: for a run refused before it executed, without waiting for a
    # worker still loading to notice.
    finish: Callable[[bool], None] | None = None


@dataclass
class StepContext:
    run_id: str
    step: Step
    spec: Mapping[str, Any]
    variables: Mapping[str, Any]
    dry_run: bool
    workdir: Path
    clock: Clock
    runbook_dir: Path = field(default_factory=Path.cwd)
    emit: Callable[[str], None] = lambda line: None
    redact: Callable[[str], str] = lambda text: text  # masks the run's secrets
    approvals: list[ApprovalRecord] = field(default_factory=list)
    # Approvals in the table that no journal record gives: never counted, only named.
    unrecorded: list[ApprovalRecord] = field(default_factory=list)
    store: StateStore | None = None
    # What a gate compares approvals given to a plan with: this run's plan and its inputs.
    gate_inputs: Mapping[str, Any] = field(default_factory=dict)

    def condition(self, expr: Any, extra: Mapping[str, Any] | None = None) -> bool:
        return condition(expr, {**self.variables, **(extra or {})},
                         f"$.steps[{self.step.id}]")
