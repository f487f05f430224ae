"""What a run's approvals were for and what it still waits on, as records the CLI formats.

An approval record holds ids (a step, a checklist item, a gate); a person reading ``status``,
the plan or the change record needs the item's text, the approver's role and the ticket, and a
waiting run needs the exact command that gives what it waits for. Both come from the evidence
an approval step records (its ``items``), so that the answer is the one the gate used.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.store import ApprovalRecord


@dataclass(frozen=True)
class Given:
    """One approval as a person reads it."""

    by: str
    at: str
    step_id: str = ""  # "" for a gate
    item: str = ""  # the checklist item attested, "" for a whole step or a gate
    gate: str = ""
    text: str = ""  # the item's or the gate's text in the checklist
    role: str = ""  # the role the gate asks for, else the person's roles in the inventory
    ticket: str = ""
    note: str = ""
    plan_hash: str = ""  # given to a plan before the run existed
    fingerprint: str = ""  # of the SSH key that signed it, "" if unsigned
    signature: str = ""
    recorded: bool = True  # False: the audit journal has no record of it, so it never counts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Wait:
    """What an approval step waits for: the step itself, attestations of checklist items,
    or a gate's remaining approvals."""

    step_id: str
    items: tuple[str, ...] = ()
    gate: str = ""
    needed: int = 0  # approvals the gate still needs
    role: str = ""
    required_ticket: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def index(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every checklist item's recorded evidence by ``STEP/ITEM``, and each gate's by
    ``gate:NAME``, from the results of approval steps (by step id)."""
    found: dict[str, dict[str, Any]] = {}
    for step_id, result in _items_of(results):
        for item_id, evidence in result.items():
            if not isinstance(evidence, Mapping):
                continue
            found[f"{step_id}/{item_id}"] = dict(evidence)
            if evidence.get("kind") == "approval" and evidence.get("gate"):
                found.setdefault(f"gate:{evidence['gate']}", dict(evidence))
    return found


def _items_of(results: Mapping[str, Mapping[str, Any]]
              ) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for step_id, result in results.items():
        items = (result or {}).get("items")
        if isinstance(items, Mapping):
            yield step_id, items


def given(approvals: Sequence[ApprovalRecord], items: Mapping[str, Mapping[str, Any]],
          people: Mapping[str, Any],
          unrecorded: Collection[ApprovalRecord] = ()) -> list[Given]:
    """The run's approvals, each with what it was for (``items`` from ``index``);
    ``unrecorded``: those the audit journal does not give, shown as not counted."""
    out = []
    for a in approvals:
        known = a not in unrecorded
        roles = ", ".join(str(r) for r in (people.get(a.by) or {}).get("roles", []))
        if not a.step_id:  # a gate, approved for the run or for its plan
            evidence = items.get(f"gate:{a.item}") or {}
            out.append(Given(by=a.by, at=a.at, gate=a.item, text=str(evidence.get("text", "")),
                             role=str(evidence.get("role") or roles), ticket=a.ticket,
                             note=a.note, plan_hash=a.plan_hash, fingerprint=a.fingerprint,
                             signature=a.signature, recorded=known))
            continue
        evidence = items.get(f"{a.step_id}/{a.item}") or {} if a.item else {}
        out.append(Given(by=a.by, at=a.at, step_id=a.step_id, item=a.item,
                         text=str(evidence.get("text", "")), role=roles, ticket=a.ticket,
                         note=a.note, plan_hash=a.plan_hash, fingerprint=a.fingerprint,
                         signature=a.signature, recorded=known))
    return out


def given_to_plan(results: Mapping[str, Mapping[str, Any]]) -> list[Given]:
    """The approvals a plan's gates counted, from its dry run's approval steps."""
    out = []
    for _step_id, items in _items_of(results):
        for evidence in items.values():
            if not isinstance(evidence, Mapping) or evidence.get("kind") != "approval":
                continue
            for a in evidence.get("approvals") or []:
                out.append(Given(by=str(a["by"]), at=str(a["at"]), gate=str(evidence["gate"]),
                                 text=str(evidence.get("text", "")),
                                 role=str(evidence.get("role") or ""),
                                 ticket=str(a.get("ticket") or ""), note=str(a.get("note") or ""),
                                 plan_hash=str(a.get("plan_hash") or "")))
    return out


def waits(step_id: str, result: Mapping[str, Any],
          approvals: Sequence[ApprovalRecord] = ()) -> list[Wait]:
    """What the approval step ``step_id`` waits for, from the evidence it recorded when it
    last ran, less the ``approvals`` given since (the next resume counts them for good)."""
    items = result.get("items")
    mine = [a for a in approvals if a.step_id == step_id]
    if not isinstance(items, Mapping) or not items:
        return [] if any(not a.item for a in mine) else [Wait(step_id)]
    attested = {a.item for a in mine}
    out = []
    attest = tuple(i for i, ev in items.items()
                   if isinstance(ev, Mapping) and ev.get("kind", "attest") == "attest"
                   and not ev.get("passed") and i not in attested)
    if attest:
        out.append(Wait(step_id, items=attest))
    for ev in items.values():
        if isinstance(ev, Mapping) and ev.get("kind") == "approval" and not ev.get("passed"):
            gate = str(ev["gate"])
            have = {str(a["by"]) for a in ev.get("approvals") or []} | \
                {a.by for a in approvals if not a.step_id and a.item == gate}
            needed = int(ev.get("quorum", 1)) - len(have)
            if needed > 0:
                out.append(Wait(step_id, gate=gate, needed=needed,
                                role=str(ev.get("role") or ""),
                                required_ticket=bool(ev.get("required_ticket"))))
    return out
