"""The statuses a run and a step can have, one enum each.

They are ``StrEnum`` so that what the store records (the text) and what the code compares
(the member) are the same value; ``errors.EXIT_CODES`` maps each run status to the exit code.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"  # for an approval: exit 3
    FAILED = "failed"
    REFUSED = "refused"  # its input was found invalid before anything changed
    INTERRUPTED = "interrupted"
    DONE = "done"
    ABORTED = "aborted"
    PLANNED = "planned"  # a dry run that went through


# A run in these states can be resumed (and aborted, and approved); the others are over.
RESUMABLE = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.FAILED, RunStatus.INTERRUPTED)
# Over for good: the run's environment lock is released.
ENDED = (RunStatus.DONE, RunStatus.ABORTED, RunStatus.REFUSED)


class StepStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"
    REFUSED = "refused"
    INTERRUPTED = "interrupted"
    WAITING = "waiting"
    WOULD_RUN = "would-run"  # a dry run: it would change something
    CHECKED = "checked"  # a dry run ran its read-only part
    # Only what a run reports, never recorded: done in an earlier attempt, not run again.
    DONE = "done"


# A step in these states is not run again by a resume (unless its inputs changed).
STEP_DONE = (StepStatus.OK, StepStatus.SKIPPED)
