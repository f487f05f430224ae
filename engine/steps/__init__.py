"""Step types: one module each, found by name in ``STEP_TYPES``.

A step type is a module with ``run(ctx: StepContext) -> Outcome``. It raises ``StepFailed``
or ``StepRetryable`` on failure and leaves retrying to the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from engine.clock import Clock
from engine.model import Outcome, Step
from engine.render import condition
from engine.steps import approval, assert_, command, record, set_, wait
from engine.store import ApprovalRecord, StateStore


class StepType(Protocol):
    def run(self, ctx: StepContext) -> Outcome: ...


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
    store: StateStore | None = None
    # What a gate compares approvals given to a plan with: this run's plan and its inputs.
    gate_inputs: Mapping[str, Any] = field(default_factory=dict)

    def condition(self, expr: Any, extra: Mapping[str, Any] | None = None) -> bool:
        return condition(expr, {**self.variables, **(extra or {})},
                         f"$.steps[{self.step.id}]")


class _Lazy:
    """Imports the ansible step type on first use, so ``runbook --help`` stays fast."""

    def __init__(self, module: str) -> None:
        self._module = module

    def run(self, ctx: StepContext) -> Outcome:
        import importlib
        mod: Any = importlib.import_module(self._module)
        result: Outcome = mod.run(ctx)
        return result


STEP_TYPES: dict[str, StepType | ModuleType] = {
    "command": command,
    "ansible": _Lazy("engine.steps.ansible"),
    "assert": assert_,
    "set": set_,
    "wait": wait,
    "approval": approval,
    "record": record,
}
