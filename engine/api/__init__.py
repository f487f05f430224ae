"""What the CLI (or any caller) can ask of the engine: plan, run, resume, approve, abort,
status, validate, gc. Typed keyword arguments in, result records out; nothing printed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.clock import Clock, SystemClock, iso
from engine.errors import Drifted, InvalidInput, LockHeld, RunNotFound
from engine.language import loader, schema
from engine.language import params as params_mod
from engine.language.model import Inventory, Runbook, build_runbook
from engine.run import references
from engine.run.execute import Executor, RunResult, prepare_ahead
from engine.run.plan import Plan
from engine.run.plan import build as build_plan
from engine.run.report import NullReporter, Reporter
from engine.status import RESUMABLE, RunStatus, StepStatus
from engine.steps import monitoring as analysis
from engine.store import (
    EventRecord,
    HistoryRecord,
    JournalRecord,
    LockRecord,
    PlanRecord,
    RunRecord,
    StateStore,
    StepRecord,
    home,
    open_store,
)
from engine.store.owner import interrupt, this_process
from engine.store.sql import lock_envs
from engine.system import identity, pause
from engine.trust import approval_info, gates
from engine.trust.secrets import Redactor, environment_secrets
from engine.views import drift as drift_mod
from engine.views.records import (
    AbortResult,
    ChangeRecord,
    DeadEnd,
    GcResult,
    PlanReport,
    RunDetail,
)

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    from engine.trust.audit import HeadFile, Verdict
    from engine.trust.journal_head import Head
    from engine.views import board as board_mod

ABORT_WAIT = 15.0  # seconds an abort waits for the process executing the run to stop


def load_runbook(name_or_path: str) -> Runbook:
    doc = loader.load(loader.resolve(name_or_path, "runbooks"), "Runbook")
    schema.validate(doc, "runbook")
    runbook = build_runbook(doc, _load_fragment)
    _check_template_syntax(runbook)
    references.check(runbook)
    return runbook


def _load_fragment(path: Path) -> loader.Document:
    doc = loader.load(path, "Fragment")
    schema.validate(doc, "fragment")
    return doc


def load_inventory(name: str | None, runbook: Runbook | None = None) -> Inventory:
    """The inventory named, else ``$RUNBOOK_INVENTORY``, else the runbook's own."""
    name = name or os.environ.get("RUNBOOK_INVENTORY") or (runbook.inventory if runbook else None)
    return _inventory_at(name)


def _inventory_at(name: str | None) -> Inventory:
    if not name:
        return Inventory(name="", path=None, sha256=hashlib.sha256(b"").hexdigest())
    doc = loader.load(loader.resolve(name, "inventories"), "Inventory")
    schema.validate(doc, "inventory")
    for env, windows in (doc.data.get("maintenance_windows") or {}).items():
        for i, window in enumerate(windows):
            problem = gates.window_problem(window)
            if problem:
                at = ("maintenance_windows", env, i, problem[0])
                raise InvalidInput(problem[1], file=str(doc.path), line=doc.line_of(at),
                                   path=f"$.maintenance_windows.{env}[{i}].{problem[0]}")
    for where, message in analysis.problems(doc.data):
        raise InvalidInput(message, file=str(doc.path), line=doc.line_of(where),
                           path="$." + ".".join(str(k) for k in where))
    from engine.trust import keys, signatures

    people_keys = keys.load(doc)
    signatures.apply_checklist_policy(doc.data)
    return Inventory(name=doc.path.stem, path=doc.path,
                     sha256=keys.inventory_sha(doc.sha256, people_keys), data=doc.data,
                     lines=doc.lines, keys=people_keys.keys)


def validate(paths: Sequence[str], *, taken_flags: Collection[str] = ()
             ) -> list[tuple[str, InvalidInput | None]]:
    """Check each runbook (all known runbooks when ``paths`` is empty); ``taken_flags`` are
    the caller's own options, which no param may be given as."""
    targets = list(paths) or [str(p) for p in loader.list_names("runbooks").values()]
    out: list[tuple[str, InvalidInput | None]] = []
    for target in targets:
        try:
            params_mod.check_flags(load_runbook(target), taken_flags)
            out.append((target, None))
        except InvalidInput as exc:
            out.append((target, exc))
    return out


def plan(*, runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None = None,
         user: str | None = None, clock: Clock | None = None,
         reporter: Reporter | None = None, state: str | None = None,
         accept_drift: bool = False) -> PlanReport:
    """Render every step, run the read-only parts (check mode), change nothing. A runbook
    that checks drift is refused (``Drifted``) when an environment it changes has drifted,
    unless ``accept_drift``. ``runbook`` is a name, a path, or what ``load_runbook`` loaded
    (the CLI has loaded it to read its params: loading it again would check it twice)."""
    clock = clock or SystemClock()
    book, inv, values, redactor = _prepare(runbook, params, inventory)
    run_id = "plan-" + new_run_id(clock)
    name, where = _who(user)
    info = {"id": run_id, "user": identity.check_name(name, where),
            "started_at": iso(clock.now())}
    the_plan = build_plan(book, inv, values, info, {}, redactor)
    reads = _drift_reads(book, inv, the_plan)
    try:
        return _dry_run(book, inv, the_plan, info, reads, state, reporter, clock, accept_drift)
    finally:
        if reads is not None:
            reads.close()


def _dry_run(book: Runbook, inv: Inventory, the_plan: Plan, info: Mapping[str, str],
             reads: drift_mod.Reads | None, state: str | None, reporter: Reporter | None,
             clock: Clock, accept_drift: bool) -> PlanReport:
    _check_commands(the_plan)
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
    book, inv, values, redactor = _prepare(runbook, params, inventory)
    name, where = _who(user)
    user = identity.check_starter(name, inv.data, where)
    run_id = new_run_id(clock)
    started = iso(clock.now())
    the_plan = build_plan(book, inv, values,
                          {"id": run_id, "user": user, "started_at": started}, {}, redactor)
    # The drift check's kubectl reads the cluster while the run's own work goes on: what it
    # starts ahead (the warm worker), checking the plan, opening the store.
    reads = _drift_reads(book, inv, the_plan)
    try:
        # Started while the plan is checked and the drift check reads the cluster; ended if
        # the run goes no further.
        prepare_ahead(run_id, book)
        _check_commands(the_plan)
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
    if "engine.steps.ansible.warm" in sys.modules:
        sys.modules["engine.steps.ansible.warm"].close_all(at_once=True)


def _check_commands(the_plan: Plan) -> None:
    """A step that cannot even start (a command's program or folder that does not exist) is
    refused with the run, before it is recorded or takes a lock."""
    from engine.steps import STEP_TYPES

    for planned in the_plan.steps:
        kind = STEP_TYPES[planned.step.type]
        preflight = kind.preflight
        if planned.rendered is None or planned.when is False:
            continue
        if kind.check is not None:
            kind.check(planned.rendered, the_plan.inventory)
        if preflight is None:
            continue
        problem = preflight(planned.rendered)
        if problem:
            step = planned.step
            raise InvalidInput(the_plan.redactor.text(f"step {step.id} cannot run: {problem}"),
                               file=step.file or str(the_plan.runbook.path),
                               line=step.line_of(f"$.steps[{step.id}].{step.type}"))


def resume(*, run_id: str, force: bool = False, user: str | None = None,
           clock: Clock | None = None, reporter: Reporter | None = None,
           state: str | None = None) -> RunResult:
    clock = clock or SystemClock()
    reporter = reporter or NullReporter()
    with open_store(state) as store:
        record = _resumable(store.get_run(run_id), run_id)
        book, inv, changed = _files_of(record)
        name, where = _who(user)
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
    inv = _inventory_at(record.inventory)
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


def drift(*, env: str | None = None, inventory: str | None = None,
          state: str | None = None) -> list[drift_mod.Drift]:
    """What the overlay, the cluster and the history say each environment (or ``env``) runs,
    in the inventory's order."""
    inv = load_inventory(inventory)
    if inv.path is None:
        raise InvalidInput("no inventory: give --inventory NAME or set RUNBOOK_INVENTORY")
    environments = inv.data.get("environments") or {}
    if env is not None and env not in environments:
        raise InvalidInput(f"unknown environment {env} (environments: "
                           f"{', '.join(environments)})", file=str(inv.path))
    with open_store(state, readonly=True) as store:
        return drift_mod.check(environments, [env] if env else list(environments), store,
                               _kubeconfig(inv))


def board(*, inventory: str | None = None, cluster: bool = True, clock: Clock | None = None,
          state: str | None = None) -> board_mod.Board:
    """The environment board: each environment of the inventory in promotion order, what it
    runs (read from every cluster at once; ``cluster=False`` reads only the store), its
    history, last run, lock and waiting runs (one store query for each kind of record)."""
    from engine.views import board as board_mod

    clock = clock or SystemClock()
    inv = load_inventory(inventory)
    if inv.path is None:
        raise InvalidInput("no inventory: give --inventory NAME or set RUNBOOK_INVENTORY")
    environments = inv.data.get("environments") or {}
    order = board_mod.graph_order(environments, inv.data.get("promotions") or {})
    with open_store(state, readonly=True) as store:
        last = store.last_changes(gates.CHANGE_KINDS)
        runs = store.board_runs()
        held = store.locks()
        ids = [r.id for r in runs if r.status == RunStatus.WAITING]
        waiting = board_mod.waiting_runs(runs, store.steps_of(ids), store.approvals_of(ids))
    if cluster:
        drifts = drift_mod.check_recorded(environments, order, last, _kubeconfig(inv))
    else:
        drifts = [drift_mod.compare(env, None, None, last.get(env), {}) for env in order]
    return board_mod.build(inv.name, order, drifts, runs, held, waiting, clock.now())


def _drift_reads(book: Runbook, inv: Inventory, the_plan: Plan) -> drift_mod.Reads | None:
    """The reads of the drift check of the environments a runbook changes, started; None
    when it checks none."""
    environments = inv.data.get("environments") or {}
    locked = lock_envs(the_plan.lock_env)
    envs = [e for e in environments if e in locked]
    if not book.check_drift or not envs:
        return None
    return drift_mod.Reads(environments, envs, _kubeconfig(inv))


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


def _kubeconfig(inv: Inventory) -> str:
    return str((inv.data.get("vars") or {}).get("kubeconfig") or "")


def history(*, env: str | None = None, kind: str | None = None, limit: int = 50,
            state: str | None = None) -> list[HistoryRecord]:
    """The history, newest first; a filter naming an environment or a kind nothing knows is
    refused (``InvalidInput`` naming the known ones) rather than answered with nothing."""
    with open_store(state, readonly=True) as store:
        found = store.history(env=env, kind=kind, limit=limit)
        if not found and (env or kind):
            _check_history_filters(store, env, kind)
        return found


def _check_history_filters(store: StateStore, env: str | None, kind: str | None) -> None:
    recorded = store.history(limit=1_000_000)
    if env:
        inv = load_inventory(None)
        envs = dict.fromkeys([*(inv.data.get("environments") or {}),
                              *(h.env for h in recorded)])
        if env not in envs:
            raise InvalidInput(f"unknown environment {env!r} (known: "
                               f"{', '.join(envs) or 'none: give an inventory'})")
    if kind:
        kinds = _known_kinds(recorded)
        if kind not in kinds:
            raise InvalidInput(f"unknown history kind {kind!r} (known: "
                               f"{', '.join(kinds) or 'none'})")


def history_kinds(*, state: str | None = None) -> list[str]:
    """The kinds of history there are: those recorded, and those the known runbooks record."""
    with open_store(state, readonly=True) as store:
        return _known_kinds(store.history(limit=1_000_000))


def _known_kinds(recorded: Sequence[HistoryRecord]) -> list[str]:
    return sorted(dict.fromkeys([*_recorded_kinds(), *(h.kind for h in recorded)]))


def _recorded_kinds() -> list[str]:
    """The kinds of history the known runbooks record."""
    kinds = []
    for path in loader.list_names("runbooks").values():
        try:
            book = load_runbook(str(path))
        except InvalidInput:
            continue  # `runbook validate` reports it
        kinds += [str(s.spec["kind"]) for s in book.all_steps() if s.type == "record"]
    return kinds


def abort(*, run_id: str, by: str | None = None, clock: Clock | None = None,
          state: str | None = None, wait: float = ABORT_WAIT) -> AbortResult:
    """End a run for good. A process executing it is stopped (as by an interrupt) and waited
    for, at most ``wait`` seconds; the run's lock is released once nothing executes it."""
    clock = clock or SystemClock()
    with open_store(state) as store:
        name, where = _who(by)
        who = identity.check_person(name, _inventory_at(get_run(store, run_id).inventory).data,
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


def cannot_succeed(*, run_id: str, state: str | None = None) -> DeadEnd | None:
    """Why resuming run ``run_id`` cannot make it succeed (it failed and was rolled back),
    or None."""
    from engine.run import outlook

    with open_store(state, readonly=True) as store:
        record = get_run(store, run_id)
        if record.status != RunStatus.FAILED:
            return None
        try:
            book = load_runbook(record.path)
        except InvalidInput:
            return None
        found = outlook.undone_by(book, store.steps(run_id))
    if found is None:
        return None
    failed, undo = found
    return DeadEnd(failed, tuple(undo))


def status(*, run_id: str | None = None, limit: int = 20,
           state: str | None = None) -> list[RunRecord] | RunDetail:
    with open_store(state, readonly=True) as store:
        if run_id is None:
            return store.list_runs(limit)
        return _detail(store, get_run(store, run_id))


def _detail(store: StateStore, record: RunRecord) -> RunDetail:
    steps = store.steps(record.id)
    approvals = store.approvals(record.id)
    items = approval_info.index({k: s.result for k, s in steps.items()})
    people: Mapping[str, Any] = {}
    # An inventory that is gone leaves the approvals shown, without the people's roles.
    with contextlib.suppress(InvalidInput):
        people = _inventory_at(record.inventory).data.get("people") or {}
    unrecorded = store.unrecorded_approvals(approvals) if approvals else set()
    given = approval_info.given(approvals, items, people, unrecorded)
    if any((g.item or g.gate) and not g.text for g in given):
        # Given before its approval step was reached: the plan knows the item's text.
        items = {**_planned_items(store, record), **items}
        given = approval_info.given(approvals, items, people, unrecorded)
    waits = [w for s in steps.values() if s.status == StepStatus.WAITING
             for w in approval_info.waits(s.step_id, s.result, approvals)]
    return RunDetail(record, steps, approvals, store.events(record.id), tuple(given),
                     tuple(waits) if record.status == RunStatus.WAITING else ())


def _planned_items(store: StateStore, record: RunRecord) -> dict[str, dict[str, Any]]:
    """The checklist items of the run's approval steps as its plan renders them now."""
    try:
        the_plan, _ = replan(store, record)
    except InvalidInput:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for planned in the_plan.steps:
        if planned.step.type != "approval" or not isinstance(planned.items, list):
            continue
        for item in gates.items_of(planned.items):
            entry = {"text": item.text, "kind": item.kind, **item.spec}
            found[f"{planned.step.id}/{item.id}"] = entry
            if item.kind == "approval":
                found.setdefault(f"gate:{item.spec['gate']}", entry)
    return found


def locks(*, state: str | None = None) -> list[LockRecord]:
    with open_store(state, readonly=True) as store:
        return store.locks()


def journal(*, state: str | None = None) -> list[JournalRecord]:
    """The whole audit journal, oldest first."""
    with open_store(state, readonly=True) as store:
        return store.journal()


def verify_journal(*, state: str | None = None, head: str | None = None,
                   allowed_signers: str | None = None, key: str | None = None,
                   expect_records: int | None = None) -> tuple[Verdict, HeadFile | None]:
    """Check the journal's hash chain as it is read from the store, in constant memory, the
    tables and the approvals' signatures against it, and its end against a head file (its
    signature checked first) or an expected number of records. Returns the verdict and the
    head file read, if any."""
    from engine.trust import audit

    if (allowed_signers or key) and head is None:
        raise InvalidInput("--allowed-signers and --key check a head's signature: give the "
                           "head with --head FILE")
    if allowed_signers and key:
        raise InvalidInput("give --allowed-signers FILE or --key PUBKEY, not both")
    if expect_records is not None and expect_records < 0:
        raise InvalidInput("--expect-records must be 0 or more")
    anchor = audit.read_head(head, allowed_signers=allowed_signers, key=key) \
        if head is not None else None
    verdict = audit.verify_store(state, head=anchor.head if anchor else None,
                                 expect_records=expect_records, also=_signatures_problems)
    return verdict, anchor


def _signatures_problems(store: StateStore) -> Iterable[str]:
    """What is wrong with the stored approvals' signatures."""
    from engine.trust import signatures

    return signatures.check(store, lambda run_id: _keys_now(store, run_id))


def _keys_now(store: StateStore, run_id: str) -> Mapping[str, Sequence[str]]:
    """The people's keys in a run's inventory as it is now: for a run started before runs
    recorded them."""
    record = store.get_run(run_id)
    try:
        return _inventory_at(record.inventory).keys if record else {}
    except InvalidInput:
        return {}


def sign_head(*, key: str, file: str | None = None, state: str | None = None) -> Head:
    """Sign the journal's current head (after verifying the journal) with an SSH key."""
    from engine.trust import audit

    return audit.sign_head(key, file=file, state=state, also=_signatures_problems)


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

    value = (inv.data.get("retention") or {}).get("artifacts")
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
        name, where = _who(by)
        identity.check_name(name, where)
        for lock in store.locks():
            held_by = store.get_run(lock.run_id) if lock.env in lock_envs(env) else None
            if held_by is not None:  # who may release it: the people of that run's inventory
                identity.check_person(name, _inventory_at(held_by.inventory).data, where)
        if not store.release_lock(env, by=name, reason=reason, at=iso(clock.now())):
            raise InvalidInput(f"{env} is not locked")


def change_record(*, run_id: str, state: str | None = None) -> ChangeRecord:
    """What the markdown change record of a run (for the CAB ticket) shows."""
    with open_store(state, readonly=True) as store:
        detail = _detail(store, get_run(store, run_id))
        journal = store.journal(run_id)
        static: PlanReport | None
        try:
            the_plan, _ = replan(store, detail.run)
            static = PlanReport(the_plan, RunResult(run_id, RunStatus.PLANNED, "", ()))
        except InvalidInput:
            static = None  # the runbook is gone or changed: the journal still tells
    return ChangeRecord(detail, journal, static)


def current_user() -> str:
    return identity.claimed()


def _who(given: str | None) -> tuple[str, str]:
    """The name acting and where it came from, for the message that refuses it."""
    if given:
        return given, "--by"
    if os.environ.get("RUNBOOK_USER"):
        return current_user(), "RUNBOOK_USER"
    return current_user(), "the login name"


def new_run_id(clock: Clock) -> str:
    return f"{clock.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _prepare(runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None
             ) -> tuple[Runbook, Inventory, dict[str, Any], Redactor]:
    book = runbook if isinstance(runbook, Runbook) else load_runbook(runbook)
    inv = load_inventory(inventory, book)
    values = params_mod.coerce(book, params)
    return book, inv, values, redactor_for(book, values, inv)


def redactor_for(book: Runbook, values: Mapping[str, Any],
                 inventory: Inventory | None = None) -> Redactor:
    """Masks the run's secrets: secret params, and secret values of the environment."""
    secret_names = [p.name for p in book.params if p.secret]
    named = password_envs(inventory.data) if inventory else []
    redactor = Redactor((str(values[n]) for n in secret_names if n in values), secret_names)
    for value in environment_secrets(os.environ, named):
        redactor.add_value(value)
    from engine.steps import STEP_TYPES

    for kind in STEP_TYPES.values():
        for value in kind.secrets(inventory.data) if kind.secrets and inventory else ():
            redactor.add_value(value)
    return redactor


def password_envs(data: Any) -> list[str]:
    """Every ``password_env`` the inventory names, wherever it sits."""
    if isinstance(data, Mapping):
        found = [str(v) for k, v in data.items() if k == "password_env" and isinstance(v, str)]
        return found + [n for v in data.values() for n in password_envs(v)]
    if isinstance(data, list):
        return [n for v in data for n in password_envs(v)]
    return []


def get_run(store: StateStore, run_id: str) -> RunRecord:
    record = store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return record


def _check_template_syntax(runbook: Runbook) -> None:
    from jinja2 import TemplateError

    from engine.language.render import syntax_check

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, Mapping):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list | tuple):
            return [s for v in value for s in strings(v)]
        return []

    for step in runbook.all_steps():
        for text in strings([step.name, step.when, dict(step.spec), dict(step.args or {})]):
            try:
                syntax_check(text)
            except TemplateError as exc:
                raise InvalidInput(f"template error in {text!r}: {exc.message}",
                                   file=step.file, line=step.line,
                                   path=f"$.steps[{step.id}]") from exc
