"""Use cases that execute: plan (a dry run), run, resume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.api.common import acting, new_run_id
from engine.clock import Clock, SystemClock, iso
from engine.errors import Drifted, InvalidInput, LockHeld, RunNotFound
from engine.language import params as params_mod
from engine.language.model import Inventory, Runbook
from engine.run.execute import Executor, RunResult, prepare_ahead
from engine.run.load import (
    check_steps,
    inventory_at,
    kubeconfig_of,
    load_runbook,
    prepare,
    redactor_for,
)
from engine.run.plan import Plan
from engine.run.plan import build as build_plan
from engine.run.report import NullReporter, Reporter
from engine.status import RESUMABLE, RunStatus
from engine.store import (
    EventRecord,
    LockRecord,
    PlanRecord,
    RunRecord,
    StateStore,
    StepRecord,
    home,
    lock_envs,
    open_store,
)
from engine.store.owner import this_process
from engine.system import identity, pause
from engine.views import drift as drift_mod
from engine.views.records import (
    PlanReport,
)

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    pass



def plan(*, runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None = None,
         user: str | None = None, clock: Clock | None = None,
         reporter: Reporter | None = None, state: str | None = None,
         accept_drift: bool = False) -> PlanReport:
    """Render every step, run the read-only parts (check mode), change nothing. A runbook
    that checks drift is refused (``Drifted``) when an environment it changes has drifted,
    unless ``accept_drift``. ``runbook`` is a name, a path, or what ``load_runbook`` loaded
    (the CLI has loaded it to read its params: loading it again would check it twice)."""
    clock = clock or SystemClock()
    book, inv, the_plan, info = _planned(runbook, params, inventory, user, clock, dry_run=True)
    reads = _drift_reads(book, inv, the_plan)
    try:
        return _dry_run(book, inv, the_plan, info, reads, state, reporter, clock, accept_drift)
    finally:
        if reads is not None:
            reads.close()


def _planned(runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None,
             user: str | None, clock: Clock, *, dry_run: bool
             ) -> tuple[Runbook, Inventory, Plan, dict[str, str]]:
    """What a plan and a run start from: the runbook and inventory loaded, the params
    checked, who acts (anyone known may plan; a run's starter as the inventory allows), the
    id, and the plan built."""
    book, inv, values, redactor = prepare(runbook, params, inventory)
    name, where = acting(user)
    who = identity.check_name(name, where) if dry_run \
        else identity.check_starter(name, inv.data, where)
    info = {"id": ("plan-" if dry_run else "") + new_run_id(clock), "user": who,
            "started_at": iso(clock.now())}
    return book, inv, build_plan(book, inv, values, info, {}, redactor), info


def _dry_run(book: Runbook, inv: Inventory, the_plan: Plan, info: Mapping[str, str],
             reads: drift_mod.Reads | None, state: str | None, reporter: Reporter | None,
             clock: Clock, accept_drift: bool) -> PlanReport:
    check_steps(the_plan)
    run_id = info["id"]
    workdir = home() / "plans" / run_id
    with open_store(state) as store:
        drifts = _drift_before(book, reads, store, accept_drift)
        result = Executor(the_plan, run_id=run_id, store=store,
                          reporter=reporter or NullReporter(), clock=clock, workdir=workdir,
                          checkpoints={}, dry_run=True).run()
        # The hash covers what the dry run resolved for the runbook's bindings.
        the_plan = replace(the_plan, hash=result.plan_hash or the_plan.hash,
                           bound=dict(result.bound))
        # Recorded so that approvals can be given to this plan's hash before a run exists.
        store.save_plan(PlanRecord(hash=the_plan.hash, runbook=book.name,
                                   runbook_sha=book.sha256, inventory_sha=inv.sha256,
                                   params=dict(the_plan.params), created_at=info["started_at"],
                                   created_by=info["user"], path=str(book.path.resolve()),
                                   bound=dict(the_plan.bound)))
    return PlanReport(plan=the_plan, dry_run=result, drift=tuple(drifts))


def run(*, runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None = None,
        user: str | None = None, clock: Clock | None = None, reporter: Reporter | None = None,
        state: str | None = None, accept_drift: bool = False) -> RunResult:
    """Record a run, take its locks and execute it. A drifted environment refuses it before
    anything is recorded (``Drifted``), unless ``accept_drift``, which its journal records.
    ``runbook`` as for ``plan``."""
    clock = clock or SystemClock()
    reporter = reporter or NullReporter()
    book, inv, the_plan, info = _planned(runbook, params, inventory, user, clock, dry_run=False)
    run_id, user, started = info["id"], info["user"], info["started_at"]
    # The drift check's kubectl reads the cluster while the run's own work goes on: what it
    # starts ahead (the warm worker), checking the plan, opening the store.
    reads = _drift_reads(book, inv, the_plan)
    try:
        # Started while the plan is checked and the drift check reads the cluster; ended if
        # the run goes no further.
        prepare_ahead(run_id, book)
        check_steps(the_plan)
        return _start(book, inv, the_plan, run_id, user, started, state, reporter, clock,
                      reads, accept_drift)
    finally:
        if reads is not None:
            reads.close()
        _end_started()


def _start(book: Runbook, inv: Inventory, the_plan: Plan, run_id: str, user: str,
           started: str, state: str | None, reporter: Reporter, clock: Clock,
           reads: drift_mod.Reads | None, accept_drift: bool) -> RunResult:
    with open_store(state) as store:
        record = RunRecord(id=run_id, runbook=book.name, path=str(book.path.resolve()),
                           runbook_sha=book.sha256, inventory=str(inv.path.resolve())
                           if inv.path else None, inventory_sha=inv.sha256,
                           params=dict(the_plan.params), user=user, started_at=started,
                           plan_hash=the_plan.hash, lock_env=the_plan.lock_env)
        drifted = [d for d in _drift_before(book, reads, store, accept_drift)
                   if not d.agrees]
        owner = this_process()
        holder = store.create_run(record, owner=owner, keys=inv.keys)
        if holder is not None:
            raise _locked(holder)
        if drifted:
            store.add_event(EventRecord(run_id, started, "accept-drift", {
                "by": user, "drift": [d.as_dict() for d in drifted]}))
        try:
            return _execute(store, record, the_plan, {}, reporter, clock, resumed=False)
        finally:
            store.release_run(record.id, owner)


def _end_started() -> None:
    """End whatever the run started ahead and did not use (a run that executes ends its own
    as it finishes): a refused run does not wait for it."""
    from engine.steps import finish_all

    finish_all(at_once=True)


def resume(*, run_id: str, force: bool = False, user: str | None = None,
           clock: Clock | None = None, reporter: Reporter | None = None,
           state: str | None = None) -> RunResult:
    clock = clock or SystemClock()
    reporter = reporter or NullReporter()
    with open_store(state) as store:
        record = _resumable(store.get_run(run_id), run_id)
        book, inv, changed = _files_of(record)
        name, where = acting(user)
        resumer = identity.check_starter(name, inv.data, where)
        if changed and not force:
            raise InvalidInput(f"the {' and the '.join(changed)} changed since run {run_id} "
                               "started; resume with --force to go on with the new version")
        owner = this_process()
        pause.before_claim()
        with store.locked_run(run_id) as current:
            # Checked again where nothing can change the run before it is ours: a resume
            # that finished it meanwhile leaves it done, and this one refuses.
            record = _resumable(current, run_id)
            holder = store.claim_run(run_id, owner)
            if holder:
                raise _being_executed(run_id, holder)
        try:
            return _resume_claimed(store, record, book, inv, changed, resumer, reporter, clock)
        finally:
            store.release_run(run_id, owner)


def _resume_claimed(store: StateStore, record: RunRecord, book: Runbook, inv: Inventory,
                    changed: list[str], resumer: str, reporter: Reporter,
                    clock: Clock) -> RunResult:
    # Whatever an earlier, killed attempt left alive must not go on beside this one.
    from engine.system import proc

    proc.end_processes_of(record.id)
    proc.remove_scratch_of(record.id)
    # Read once the run is ours, so that whatever ran before the claim counts as done.
    checkpoints = store.steps(record.id)
    the_plan = _plan_of(record, book, inv, checkpoints)
    with store.locked_run(record.id) as current:
        record = _resumable(current, record.id)  # an abort may have come in meanwhile
        now = iso(clock.now())
        if changed:
            store.add_event(EventRecord(record.id, now, "force-resume",
                                        {"by": resumer, "changed": changed,
                                         "runbook_sha": book.sha256,
                                         "inventory_sha": inv.sha256}))
            record = replace(record, runbook_sha=book.sha256, inventory_sha=inv.sha256)
        if record.lock_env:  # kept while it waited or failed, unless someone released it
            holder = store.acquire_lock(LockRecord(record.lock_env, record.id, record.user,
                                                   now))
            if holder is not None:
                raise _locked(holder)  # rolls back the whole transaction
        store.set_run_status(record.id, RunStatus.RUNNING)
        store.add_event(EventRecord(record.id, now, "resume", {"by": resumer}))
    return _execute(store, record, the_plan, checkpoints, reporter, clock, resumed=True)


def _resumable(record: RunRecord | None, run_id: str) -> RunRecord:
    if record is None:
        raise RunNotFound(run_id)
    if record.status not in RESUMABLE:
        raise InvalidInput(f"run {run_id} is {record.status}; only a run that is "
                           f"{', '.join(RESUMABLE)} can be resumed")
    return record


def _being_executed(run_id: str, holder: str) -> LockHeld:
    return LockHeld(f"run {run_id} is being executed by process {holder}")


def _locked(holder: LockRecord) -> LockHeld:
    return LockHeld(f"{holder.env} is locked by run {holder.run_id}, started by {holder.user} "
                    f"since {holder.since}; wait for it to end, or abort it")


def replan(store: StateStore, record: RunRecord) -> tuple[Plan, list[str]]:
    """The plan of a recorded run from its files as they are now, and what changed in them."""
    book, inv, changed = _files_of(record)
    return _plan_of(record, book, inv, store.steps(record.id)), changed


def _files_of(record: RunRecord) -> tuple[Runbook, Inventory, list[str]]:
    """A recorded run's runbook and inventory as they are now, and which of them changed."""
    book = load_runbook(record.path)
    inv = inventory_at(record.inventory)
    changed = [what for what, old, new in (("runbook", record.runbook_sha, book.sha256),
                                           ("inventory", record.inventory_sha, inv.sha256))
               if old != new]
    return book, inv, changed


def _plan_of(record: RunRecord, book: Runbook, inv: Inventory,
             checkpoints: Mapping[str, StepRecord]) -> Plan:
    values = params_mod.coerce(book, record.params)
    info = {"id": record.id, "user": record.user, "started_at": record.started_at}
    return build_plan(book, inv, values, info, checkpoints, redactor_for(book, values, inv))


def _execute(store: StateStore, record: RunRecord, the_plan: Plan,
             checkpoints: Mapping[str, StepRecord], reporter: Reporter, clock: Clock, *,
             resumed: bool) -> RunResult:
    """Run the plan of a run this process holds."""
    reporter.run_started(record.id, record.runbook, resumed=resumed, dry_run=False)
    workdir = home() / "runs" / record.id
    return Executor(the_plan, run_id=record.id, store=store, reporter=reporter, clock=clock,
                    workdir=workdir, checkpoints=checkpoints).run()


def _drift_reads(book: Runbook, inv: Inventory, the_plan: Plan) -> drift_mod.Reads | None:
    """The reads of the drift check of the environments a runbook changes, started; None
    when it checks none."""
    environments = inv.environments
    locked = lock_envs(the_plan.lock_env)
    envs = [e for e in environments if e in locked]
    if not book.check_drift or not envs:
        return None
    return drift_mod.Reads(inv.data, envs, kubeconfig_of(inv))


def _drift_before(book: Runbook, reads: drift_mod.Reads | None, store: StateStore,
                  accept: bool) -> list[drift_mod.Drift]:
    """The drift of the environments a runbook changes (``reads``); ``Drifted`` if any has
    drifted and that is not accepted."""
    if reads is None:
        return []
    with reads:
        found = reads.check(store)
    problems = [p for d in found for p in d.problems]
    if problems and not accept:
        raise Drifted(f"{book.name} refused: {'; '.join(problems)} (runbook drift shows it; "
                      "make them agree, or give --accept-drift to go on anyway, recorded)")
    return found
