"""``runbook approve``: record a person's approval of a run's step, checklist items or gate,
or of a gate for a plan before the run exists. Four-eyes: the person who started a run never
approves it (by name, nor with a key of theirs); a gate counts distinct, eligible people;
only known people approve; where the inventory requires it, only with a signature that
``ssh-keygen`` verifies before anything is recorded (engine.trust.signatures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from engine.api.common import get_run
from engine.api.runs import replan
from engine.clock import Clock, SystemClock, iso
from engine.errors import InvalidInput, RunNotFound
from engine.language import params
from engine.run.load import load_inventory, load_runbook, redactor_for
from engine.run.plan import Plan
from engine.run.plan import build as build_plan
from engine.status import RESUMABLE
from engine.steps import STEP_TYPES
from engine.store import ApprovalRecord, PlanRecord, RunRecord, StateStore, open_store
from engine.store.records import start_keys
from engine.system import identity, pause
from engine.trust import gates, signatures
from engine.trust.signatures import Signers, Signing

CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of this clock a signer's clock may be


def approve(*, by: str, run_id: str | None = None, plan_hash: str | None = None,
            step: str | None = None, items: Sequence[str] = (), gate: str | None = None,
            note: str = "", ticket: str = "", clock: Clock | None = None,
            state: str | None = None, signing: Signing | None = None,
            at: str | None = None) -> list[ApprovalRecord]:
    """Record the approval, signed with ``signing`` (required where the inventory says so)
    and checked before anything is recorded; ``at``, the time a signature made elsewhere
    covers (now by default)."""
    with open_store(state) as store:
        given = _given(store, by=by, run_id=run_id, plan_hash=plan_hash, step=step,
                       items=items, gate=gate, note=note, ticket=ticket,
                       at=_at(at, clock or SystemClock()))
        approvals = signatures.sign(given.approvals, signing or Signing(), given.signers,
                                    run_plan_hash=given.run_plan_hash, role=given.role,
                                    what=given.what, needed=given.needed)
        if run_id is None:
            _record(store, approvals)
            return approvals
        pause.before_claim()
        with store.locked_run(run_id) as current:
            # Checked again in the transaction that records: a run that ended
            # meanwhile (done, aborted) takes no approval.
            if current is None:
                raise RunNotFound(run_id)
            if current.status not in RESUMABLE:
                raise InvalidInput(f"run {run_id} is {current.status}: nothing to approve")
            _record(store, approvals)
        return approvals


def payload(*, by: str, run_id: str | None = None, plan_hash: str | None = None,
            step: str | None = None, items: Sequence[str] = (), gate: str | None = None,
            note: str = "", ticket: str = "", at: str | None = None,
            clock: Clock | None = None, state: str | None = None) -> bytes:
    """What a person signs (``ssh-keygen -Y sign -n runbook-approval``) to give this
    approval with a signature made elsewhere; checked as ``approve`` checks it, recording
    nothing."""
    with open_store(state, readonly=True) as store:
        given = _given(store, by=by, run_id=run_id, plan_hash=plan_hash, step=step,
                       items=items, gate=gate, note=note, ticket=ticket,
                       at=_at(at, clock or SystemClock()))
    return signatures.payload(given.approvals, run_plan_hash=given.run_plan_hash,
                              role=given.role)


@dataclass(frozen=True)
class _Given:
    """The approvals a command gives, and what their signature must be."""

    approvals: list[ApprovalRecord]
    signers: Signers
    run_plan_hash: str = ""
    role: str = ""
    what: str = ""
    needed: bool = False


def _given(store: StateStore, *, by: str, run_id: str | None, plan_hash: str | None,
           step: str | None, items: Sequence[str], gate: str | None, note: str, ticket: str,
           at: str) -> _Given:
    if (run_id is None) == (plan_hash is None):
        raise InvalidInput("approve a run (RUN_ID) or a plan (--plan HASH), not both")
    identity.check_name(by, "--by")
    if plan_hash is not None:
        if not gate:
            raise InvalidInput("a plan is approved for a gate: give --gate NAME")
        record = _plan_record(store, plan_hash)
        the_plan = _plan_of(record)
        found = _check_gate(the_plan, gate, by, ticket)
        approvals = [ApprovalRecord(run_id="", step_id="", by=by, at=at, note=note,
                                    item=gate, ticket=ticket, plan_hash=record.hash)]
        # The plan's maker starts no run by making it: the run's starter is refused when
        # the gate counts.
        return _Given(approvals, Signers(the_plan.inventory.keys),
                      role=str(found.spec.get("role") or ""), what=f"the {gate} gate",
                      needed=found.signed)
    assert run_id is not None
    run = get_run(store, run_id)
    if run.status not in RESUMABLE:
        raise InvalidInput(f"run {run_id} is {run.status}: nothing to approve")
    if by == run.user:
        raise InvalidInput(f"{by} started run {run_id} and cannot approve it: "
                           "another person must")
    the_plan, _ = replan(store, run)
    approvals, needed, role = _for_run(the_plan, run, by, at, step, items, gate, note, ticket)
    keys = the_plan.inventory.keys
    signers = Signers(keys, run.user, tuple(keys.get(run.user, ())) + _keys_at_start(store, run))
    what = f"the {gate} gate" if gate else f"item {', '.join(items)} of step {step}" \
        if items else f"step {step}"
    return _Given(approvals, signers, run.plan_hash, role, what, needed)


def _keys_at_start(store: StateStore, run: RunRecord) -> tuple[str, ...]:
    """The starter's keys as the inventory listed them when the run started."""
    start = next((j for j in store.journal(run.id) if j.kind == "run-start"), None)
    recorded = (start_keys(start.data, store.keyring) or {}) if start else {}
    return tuple(str(k) for k in recorded.get(run.user) or ())


def _at(given: str | None, clock: Clock) -> str:
    """The approval's time: now, or the time given (a signature made elsewhere covers it),
    which cannot be later than now."""
    now = clock.now()
    if given is None:
        return iso(now)
    try:
        moment = gates.parse_time(given)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(f"--at {given!r} is not an ISO 8601 time with a zone (such as "
                           "2026-11-28T22:00:00Z)")
    if moment > now + CLOCK_SKEW:
        raise InvalidInput(f"--at {given} is in the future")
    return iso(moment)


def _record(store: StateStore, approvals: Sequence[ApprovalRecord]) -> None:
    for approval in approvals:
        store.add_approval(approval)


def _for_run(the_plan: Plan, run: RunRecord, by: str, at: str, step: str | None,
             items: Sequence[str], gate: str | None, note: str,
             ticket: str) -> tuple[list[ApprovalRecord], bool, str]:
    """The approvals given, whether they must be signed, and the role they are given in."""
    if gate:
        the_gate = _check_gate(the_plan, gate, by, ticket)
        return ([ApprovalRecord(run_id=run.id, step_id="", by=by, at=at, note=note, item=gate,
                                ticket=ticket)], the_gate.signed,
                str(the_gate.spec.get("role") or ""))
    _check_person(the_plan, by)
    steps = [p for p in the_plan.steps if STEP_TYPES[p.step.type].gate]
    target = next((p for p in steps if p.step.id == step), None)
    if target is None:
        names = ", ".join(p.step.id for p in steps) or "none"
        raise InvalidInput(f"run {run.id} has no approval step {step!r} "
                           f"(approval steps: {names})")
    checklist = gates.items_of(target.items)
    attestable = [i.id for i in checklist if i.kind == "attest"]
    if checklist and not items:
        raise InvalidInput(f"step {step} is a checklist: attest its items with --item "
                           f"(one of: {', '.join(attestable)})")
    if not checklist and items:
        raise InvalidInput(f"step {step} has no checklist items")
    for item in items:
        found = next((i for i in checklist if i.id == item), None)
        if found is None:
            raise InvalidInput(f"step {step} has no checklist item {item!r} "
                               f"(items: {', '.join(i.id for i in checklist)})")
        if found.kind == "check":
            raise InvalidInput(f"{item} is an automated check: it passes by itself, "
                               "nobody attests it")
        if found.kind == "approval":
            raise InvalidInput(f"{item} is the {found.spec['gate']} gate: approve it with "
                               f"--gate {found.spec['gate']}")
    needed = any(i.signed for i in checklist if i.id in items)
    return ([ApprovalRecord(run_id=run.id, step_id=str(step), by=by, at=at, note=note,
                            item=item, ticket=ticket) for item in (items or [""])], needed, "")


def _check_person(the_plan: Plan, by: str) -> None:
    identity.check_person(by, the_plan.inventory.data, "--by")


def _check_gate(the_plan: Plan, gate: str, by: str, ticket: str) -> gates.Item:
    _check_person(the_plan, by)
    found = [i for p in the_plan.steps if STEP_TYPES[p.step.type].gate
             for i in gates.items_of(p.items)
             if i.kind == "approval" and i.spec.get("gate") == gate]
    if not found:
        raise InvalidInput(f"runbook {the_plan.runbook.name} has no {gate} gate "
                           "for these inputs")
    why = gates.eligible(by, found[0], the_plan.inventory.people)
    if why:
        raise InvalidInput(why)
    if found[0].spec.get("required_ticket") and not ticket.strip():
        raise InvalidInput(f"the {gate} gate requires a change ticket: give --ticket TICKET "
                           "(such as CHG-123)")
    return found[0]


def _plan_record(store: StateStore, prefix: str) -> PlanRecord:
    found = store.find_plan(prefix) if len(prefix) >= 8 else []
    if len(found) != 1:
        what = "no plan" if not found else f"{len(found)} plans"
        raise InvalidInput(f"{what} with hash {prefix!r}: give the hash `runbook plan` "
                           "printed (at least 8 characters)")
    return found[0]


def _plan_of(record: PlanRecord) -> Plan:
    """The plan an approval is given to, rebuilt to find its gates."""
    book = load_runbook(record.path or record.runbook)
    inv = load_inventory(None, book)
    if (book.sha256, inv.sha256) != (record.runbook_sha, record.inventory_sha):
        raise InvalidInput(f"plan {record.hash[:12]} was made from another version of the "
                           "runbook or inventory: make a new plan")
    values = params.coerce(book, record.params)
    info = {"id": "plan", "user": record.created_by, "started_at": record.created_at}
    return build_plan(book, inv, values, info, {}, redactor_for(book, values, inv))
