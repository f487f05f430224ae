"""``approval``: the run stops (exit 3) until ``runbook approve`` records a person's approval.

With ``items`` (a checklist), every item must be attested, each on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import WaitingForApproval
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def items_of(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The checklist items as ``{id, text}``; a plain string is its own id."""
    raw = spec.get("items") or []
    if not isinstance(raw, list):
        raise TypeError("approval items must render to a list")
    return [{"id": str(i), "text": str(i)} if not isinstance(i, Mapping)
            else {"id": str(i["id"]), "text": str(i["text"])} for i in raw]


def run(ctx: StepContext) -> Outcome:
    prompt = str(ctx.spec["prompt"])
    items = items_of(ctx.spec)
    if ctx.dry_run:
        listed = "".join(f"\n  [ ] {i['id']}: {i['text']}" for i in items)
        return Outcome("would-run", message=f"waits for approval: {prompt}{listed}")
    mine = [a for a in ctx.approvals if a.step_id == ctx.step.id]
    if not items:
        if not mine:
            raise WaitingForApproval(ctx.step.id, prompt)
        first = mine[0]
        return Outcome("ok", {"by": first.by, "at": first.at, "note": first.note},
                       message=f"approved by {first.by}")
    attested = {a.item: a for a in mine if a.item}
    missing = [i for i in items if i["id"] not in attested]
    for item in items:
        got = attested.get(item["id"])
        mark = f"✓ {got.by}" if got else "waiting"
        ctx.emit(f"[{mark}] {item['id']}: {item['text']}")
    if missing:
        raise WaitingForApproval(
            ctx.step.id, f"{prompt}: {len(missing)} of {len(items)} items not attested "
            f"({', '.join(i['id'] for i in missing)})")
    evidence = {i["id"]: {"text": i["text"], "by": attested[i["id"]].by,
                          "at": attested[i["id"]].at, "note": attested[i["id"]].note}
                for i in items}
    people = sorted({a.by for a in attested.values()})
    return Outcome("ok", {"items": evidence, "by": people},
                   message=f"{len(items)} items attested by {', '.join(people)}")
