"""The exception tree and the one table that maps each outcome to an exit code.

Library code raises these; only ``cli.py`` turns them into exit codes and text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.status import RunStatus

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_INVALID = 2
EXIT_WAITING = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a tool that a closed pipe ended

# How a run (or a dry run) ended → the exit code of the command that ran it. Errors that stop
# a command before any run (below) carry theirs as ``exit_code``.
EXIT_CODES: Mapping[RunStatus, int] = {
    RunStatus.DONE: EXIT_OK, RunStatus.PLANNED: EXIT_OK,
    RunStatus.FAILED: EXIT_STEP_FAILED, RunStatus.ABORTED: EXIT_STEP_FAILED,
    RunStatus.REFUSED: EXIT_INVALID, RunStatus.WAITING: EXIT_WAITING,
    RunStatus.INTERRUPTED: EXIT_INTERRUPTED, RunStatus.RUNNING: EXIT_STEP_FAILED}


def exit_code(status: RunStatus) -> int:
    """The exit code for a run that ended as ``status``."""
    return EXIT_CODES[RunStatus(status)]


class RunbookError(Exception):
    """Base of every error the engine reports to a user."""

    exit_code = EXIT_STEP_FAILED


class InvalidInput(RunbookError):
    """Bad input: nothing ran, nothing was recorded."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        at = f"at {self.path}: " if self.path else ""
        return f"{where}{at}{self.message}"


class StoreDamaged(InvalidInput):
    """The state store cannot be read as one (a damaged, zeroed or foreign file): refused,
    nothing read or written; ``audit verify`` reports it as a damaged journal."""


class LockHeld(RunbookError):
    """Another run holds what this one needs."""

    exit_code = EXIT_LOCKED


class Drifted(RunbookError):
    """An environment the run would change has drifted (its overlay, cluster and history
    disagree): refused before anything ran or was recorded."""

    exit_code = EXIT_INVALID


class RunNotFound(InvalidInput):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")


class StepFailed(Exception):
    """A step failed for good; the executor may still retry it if the step allows retries."""

    def __init__(self, message: str, result: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = dict(result or {})


@dataclass
class StepRetryable(Exception):
    """A step failed in a way worth retrying after ``delay`` seconds, whatever its retries say."""

    message: str
    delay: float = 5.0

    def __str__(self) -> str:
        return self.message


class StepRefused(Exception):
    """A step found the run's input invalid (for example a revision that does not exist):
    the run stops as refused, exit code 2, before anything changed."""


class WaitingForApproval(Exception):
    """An approval step has no recorded approval yet; the run stops with exit code 3."""

    def __init__(self, step_id: str, prompt: str,
                 result: Mapping[str, Any] | None = None) -> None:
        super().__init__(prompt)
        self.step_id = step_id
        self.prompt = prompt
        self.result = dict(result or {})  # the evidence gathered so far
