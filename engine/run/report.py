"""What the executor tells the person watching. Library code never prints: the CLI passes
a Reporter in."""

from __future__ import annotations

from typing import Protocol

from engine.status import RunStatus, StepStatus


class Reporter(Protocol):
    def run_started(self, run_id: str, runbook: str, *, resumed: bool, dry_run: bool) -> None: ...
    def step_started(self, step_id: str, name: str, attempt: int) -> None: ...
    def step_output(self, step_id: str, line: str) -> None: ...
    def step_finished(self, step_id: str, name: str, status: StepStatus, message: str,
                      seconds: float) -> None: ...
    def run_finished(self, run_id: str, status: RunStatus, message: str) -> None: ...


class NullReporter:
    def run_started(self, run_id: str, runbook: str, *, resumed: bool, dry_run: bool) -> None:
        pass

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        pass

    def step_output(self, step_id: str, line: str) -> None:
        pass

    def step_finished(self, step_id: str, name: str, status: StepStatus, message: str,
                      seconds: float) -> None:
        pass

    def run_finished(self, run_id: str, status: RunStatus, message: str) -> None:
        pass
