"""Show a run's progress: live (rich) on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from engine.status import RunStatus, StepStatus
from engine.system.identity import shown

SYMBOLS = {"ok": "✓", "done": "✓", "checked": "✓", "skipped": "-", "failed": "✗", "refused": "✗",
           "waiting": "⏸", "interrupted": "!", "would-run": "·"}


class PlainReporter:
    """One line per event; safe for logs, pipes and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.out = stream or sys.stdout
        self._n = 0

    def _line(self, text: str) -> None:
        text = shown(text, keep_newlines=True)  # step messages can quote people's names
        self.out.write(text + "\n")
        self.out.flush()

    def run_started(self, run_id: str, runbook: str, *, resumed: bool, dry_run: bool) -> None:
        verb = "plan" if dry_run else ("resuming run" if resumed else "run")
        self._line(f"{verb} {run_id} (runbook {runbook})")

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._line(f"→ {step_id}: {name}{again}")

    def step_output(self, step_id: str, line: str) -> None:
        self._line(f"    {line}")

    def step_finished(self, step_id: str, name: str, status: StepStatus, message: str,
                      seconds: float) -> None:
        took = f" in {seconds:.2f} s" if seconds else ""
        detail = f": {message}" if message else ""
        self._line(f"{SYMBOLS.get(status, '?')} {step_id} {status}{took}{detail}")

    def run_finished(self, run_id: str, status: RunStatus, message: str) -> None:
        detail = f": {message}" if message else ""
        self._line(f"run {run_id} {status}{detail}")


class RichReporter(PlainReporter):
    """A spinner on the step in progress, colours unless NO_COLOR is set."""

    def __init__(self) -> None:
        from rich.console import Console

        super().__init__()
        self.console = Console(highlight=False, no_color="NO_COLOR" in os.environ)
        self._status: Any = None

    def _line(self, text: str) -> None:
        self.console.print(shown(text, keep_newlines=True), markup=False)

    def step_started(self, step_id: str, name: str, attempt: int) -> None:
        self._stop()
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._status = self.console.status(f"{step_id}: {name}{again}")
        self._status.start()

    def step_finished(self, step_id: str, name: str, status: StepStatus, message: str,
                      seconds: float) -> None:
        self._stop()
        style = {"failed": "red", "waiting": "yellow", "interrupted": "yellow"}.get(status, "green")
        took = f" in {seconds:.2f} s" if seconds else ""
        detail = f": {message}" if message else ""
        self.console.print(shown(f"{SYMBOLS.get(status, '?')} {step_id} {status}{took}{detail}",
                                 keep_newlines=True), style=style, markup=False)

    def run_finished(self, run_id: str, status: RunStatus, message: str) -> None:
        self._stop()
        super().run_finished(run_id, status, message)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def reporter_for(stream: TextIO | None = None) -> PlainReporter:
    stream = stream or sys.stdout
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return RichReporter()
    return PlainReporter(stream)
