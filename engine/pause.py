"""A point where a command can be held on purpose, just before it checks and claims a run in
one transaction (resume, approve, abort), so that a test can let another command act on the
same run meanwhile and show that the held one then sees what happened instead of acting on
what it read before.

Inert unless ``RUNBOOK_TEST_PAUSE_BEFORE_CLAIM`` names a FIFO: the process then opens it
(which waits for a writer, so the writer knows the process got here) and reads it to the
end (which waits until the writer closes it).
"""

from __future__ import annotations

import os

PAUSE_BEFORE_CLAIM = "RUNBOOK_TEST_PAUSE_BEFORE_CLAIM"


def before_claim() -> None:
    fifo = os.environ.get(PAUSE_BEFORE_CLAIM)
    if fifo:
        with open(fifo) as held:
            held.read()
