"""What every use case shares: who acts, a new run's id, a recorded run or RunNotFound."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

from engine.clock import Clock
from engine.errors import RunNotFound
from engine.store import (
    RunRecord,
    StateStore,
)
from engine.system import identity

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    pass



def current_user() -> str:
    return identity.claimed()


def acting(given: str | None) -> tuple[str, str]:
    """The name acting and where it came from, for the message that refuses it."""
    if given:
        return given, "--by"
    if os.environ.get("RUNBOOK_USER"):
        return current_user(), "RUNBOOK_USER"
    return current_user(), "the login name"


def new_run_id(clock: Clock) -> str:
    return f"{clock.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def get_run(store: StateStore, run_id: str) -> RunRecord:
    record = store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return record
