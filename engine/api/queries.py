"""Use cases that read: validate, status, history, locks, drift, the board, the change
record, and why a failed run cannot succeed."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.api.common import get_run
from engine.api.runs import replan
from engine.clock import Clock, SystemClock
from engine.errors import InvalidInput
from engine.language import loader
from engine.language import params as params_mod
from engine.run.execute import RunResult
from engine.run.load import inventory_at, kubeconfig_of, load_inventory, load_runbook
from engine.status import RunStatus, StepStatus
from engine.store import (
    HistoryRecord,
    LockRecord,
    RunRecord,
    StateStore,
    open_store,
)
from engine.trust import approval_info, gates
from engine.views import drift as drift_mod
from engine.views.records import (
    ChangeRecord,
    DeadEnd,
    PlanReport,
    RunDetail,
)

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    from engine.views import board as board_mod



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


def drift(*, env: str | None = None, inventory: str | None = None,
          state: str | None = None) -> list[drift_mod.Drift]:
    """What the overlay, the cluster and the history say each environment (or ``env``) runs,
    in the inventory's order."""
    inv = load_inventory(inventory)
    if inv.path is None:
        raise InvalidInput("no inventory: give --inventory NAME or set RUNBOOK_INVENTORY")
    environments = inv.environments
    if env is not None and env not in environments:
        raise InvalidInput(f"unknown environment {env} (environments: "
                           f"{', '.join(environments)})", file=str(inv.path))
    with open_store(state, readonly=True) as store:
        return drift_mod.check(inv.data, [env] if env else list(environments), store,
                               kubeconfig_of(inv))


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
    environments = inv.environments
    order = board_mod.graph_order(environments, inv.promotions)
    with open_store(state, readonly=True) as store:
        last = store.last_changes(gates.CHANGE_KINDS)
        runs = store.board_runs()
        held = store.locks()
        ids = [r.id for r in runs if r.status == RunStatus.WAITING]
        waiting = board_mod.waiting_runs(runs, store.steps_of(ids), store.approvals_of(ids))
    if cluster:
        drifts = drift_mod.check_recorded(inv.data, order, last, kubeconfig_of(inv))
    else:
        drifts = [drift_mod.compare(env, None, None, last.get(env), {}, checked=False)
                  for env in order]
    return board_mod.build(inv.name, order, drifts, runs, held, waiting, clock.now())




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
        envs = dict.fromkeys([*(inv.environments),
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
        return run_detail(store, get_run(store, run_id))


def run_detail(store: StateStore, record: RunRecord) -> RunDetail:
    steps = store.steps(record.id)
    approvals = store.approvals(record.id)
    items = approval_info.index({k: s.result for k, s in steps.items()})
    people: Mapping[str, Any] = {}
    # An inventory that is gone leaves the approvals shown, without the people's roles.
    with contextlib.suppress(InvalidInput):
        people = inventory_at(record.inventory).people
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


def change_record(*, run_id: str, state: str | None = None) -> ChangeRecord:
    """What the markdown change record of a run (for the CAB ticket) shows."""
    with open_store(state, readonly=True) as store:
        detail = run_detail(store, get_run(store, run_id))
        journal = store.journal(run_id)
        static: PlanReport | None
        try:
            the_plan, _ = replan(store, detail.run)
            static = PlanReport(the_plan, RunResult(run_id, RunStatus.PLANNED, "", ()))
        except InvalidInput:
            static = None  # the runbook is gone or changed: the journal still tells
    return ChangeRecord(detail, journal, static)
