"""Points where a command can be held on purpose, so that a test acts at that very moment:

- just before a command checks and claims a run in one transaction (resume, approve, abort),
  so that another command acts on the same run meanwhile and the held one is shown to see
  what happened instead of acting on what it read before;
- while ``gc`` deletes a run's folder, after its first file, so that the gc is stopped
  (SIGKILL, SIGINT) with a folder half deleted.

Inert unless the point's variable names a FIFO: the process then opens it (which waits for
a writer, so the writer knows the process got here) and reads it to the end (which waits
until the writer closes it).
"""

from __future__ import annotations

import os

PAUSE_BEFORE_CLAIM = "RUNBOOK_TEST_PAUSE_BEFORE_CLAIM"
PAUSE_WHILE_COLLECTING = "RUNBOOK_TEST_PAUSE_WHILE_COLLECTING"


def before_claim() -> None:
    _hold(PAUSE_BEFORE_CLAIM)


def while_collecting() -> None:
    _hold(PAUSE_WHILE_COLLECTING)


def _hold(variable: str) -> None:
    fifo = os.environ.get(variable)
    if fifo:
        with open(fifo) as held:
            held.read()
