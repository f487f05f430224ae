"""Use cases that end or clean up: abort a run, release a lock by hand, collect old
artifacts."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

from engine.api.common import acting, current_user, get_run
from engine.clock import Clock, SystemClock, iso
from engine.errors import InvalidInput, RunNotFound
from engine.language.model import Inventory
from engine.run.load import inventory_at, load_inventory
from engine.status import RESUMABLE, RunStatus
from engine.store import (
    EventRecord,
    StateStore,
    lock_envs,
    open_store,
)
from engine.store.owner import interrupt, this_process
from engine.system import identity, pause
from engine.views.records import (
    AbortResult,
    GcResult,
)

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    pass



ABORT_WAIT = 15.0  # seconds an abort waits for the process executing the run to stop


def abort(*, run_id: str, by: str | None = None, clock: Clock | None = None,
          state: str | None = None, wait: float = ABORT_WAIT) -> AbortResult:
    """End a run for good. A process executing it is stopped (as by an interrupt) and waited
    for, at most ``wait`` seconds; the run's lock is released once nothing executes it."""
    clock = clock or SystemClock()
    with open_store(state) as store:
        name, where = acting(by)
        who = identity.check_person(name, inventory_at(get_run(store, run_id).inventory).data,
                                    where)
        pause.before_claim()
        me = this_process()
        # One transaction from the status check to the abort: a run that ends meanwhile
        # (done by a resume) stays as it ended.
        with store.locked_run(run_id) as record:
            if record is None:
                raise RunNotFound(run_id)
            if record.status not in RESUMABLE:
                raise InvalidInput(f"run {run_id} is {record.status}: it cannot be aborted")
            at = iso(clock.now())
            store.set_run_status(run_id, RunStatus.ABORTED, ended_at=at,
                                 message=f"aborted by {who}")
            store.add_event(EventRecord(run_id, at, "abort", {"by": who}))
            holder = store.claim_run(run_id, me)  # the live process executing it, if any
        stopped = True
        if holder:
            interrupt(holder)  # once committed, so that it finds the run aborted
            stopped = _wait_for_release(store, run_id, me, wait)
        if stopped:
            # Nothing executes the run any more: its environments are free. (A holder that
            # saw the abort has released them already.)
            if record.lock_env:
                store.release_lock(record.lock_env, run_id=run_id, by=who,
                                   reason="run aborted", at=iso(clock.now()))
            store.release_run(run_id, me)
        updated = store.get_run(run_id)
        assert updated is not None
        return AbortResult(updated, holder, stopped)


def _wait_for_release(store: StateStore, run_id: str, me: str, wait: float) -> bool:
    """Whether the process holding the run let go of it (or died) within ``wait`` seconds;
    the run is then this process's."""
    deadline = time.monotonic() + wait
    while store.claim_run(run_id, me) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def gc(*, older_than: str | None = None, inventory: str | None = None, dry_run: bool = False,
       clock: Clock | None = None, state: str | None = None) -> GcResult:
    """Remove the artifacts folders of runs that ended longer ago than ``older_than`` (else the
    inventory's ``retention.artifacts``); ``dry_run`` lists them and changes nothing."""
    from engine.store import retention

    clock = clock or SystemClock()
    if older_than is not None:
        limit, text, source = retention.duration(older_than, where="--older-than"), \
            older_than, "--older-than"
    else:
        limit, text, source = _retention_of(load_inventory(inventory))
    now = clock.now()
    with open_store(state, readonly=dry_run) as store:
        collected = retention.collect(store, older_than=limit, now=now, dry_run=dry_run,
                                      reason=f"ended more than {text} ago ({source})",
                                      by=current_user())
    return GcResult(collected, text, source, iso(now - limit), dry_run)


def _retention_of(inv: Inventory) -> tuple[timedelta, str, str]:
    from engine.store import retention

    value = inv.artifacts_retention
    if value is None or inv.path is None:
        where = f"inventory {inv.path}" if inv.path else "no inventory given"
        raise InvalidInput("runbook gc needs --older-than DURATION, or an inventory with "
                           f"retention.artifacts (--inventory, $RUNBOOK_INVENTORY): {where}")
    # The inventory's schema has refused a value that is not a duration, naming its line.
    return (retention.duration(str(value), where=str(inv.path)), str(value),
            f"retention.artifacts of inventory {inv.name}")


def release_lock(*, env: str, reason: str, by: str | None = None, clock: Clock | None = None,
                 state: str | None = None) -> None:
    """Release an environment's lock by hand (recorded in the journal with the reason)."""
    clock = clock or SystemClock()
    with open_store(state) as store:
        name, where = acting(by)
        identity.check_name(name, where)
        for lock in store.locks():
            held_by = store.get_run(lock.run_id) if lock.env in lock_envs(env) else None
            if held_by is not None:  # who may release it: the people of that run's inventory
                identity.check_person(name, inventory_at(held_by.inventory).data, where)
        if not store.release_lock(env, by=name, reason=reason, at=iso(clock.now())):
            raise InvalidInput(f"{env} is not locked")
