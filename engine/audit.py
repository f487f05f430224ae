"""The audit journal: checking its hash chain, and the change record a CAB ticket needs.

Each journal record carries the hash of the one before it, so editing, removing or
reordering a record breaks the chain from that point on (``engine.store.chain`` hashes and
checks it, for the store and for this module alike). Whoever can rewrite the whole database
can rewrite the whole chain too: keep exported records, or the head hash, elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.identity import shown
from engine.store import JournalRecord
from engine.store.chain import verify

__all__ = ["change_record", "verify"]


def change_record(detail: Any, journal: Sequence[JournalRecord],
                  plan_text: str | None) -> str:
    """Markdown for the change ticket: what ran, who approved what, with which evidence."""
    run = detail.run
    out = [f"# Change record: run `{run.id}`", "",
           f"- **Runbook:** `{run.runbook}` (sha256 `{run.runbook_sha[:16]}…`)",
           f"- **Parameters:** {_params(run.params)}",
           f"- **Started:** {run.started_at} by {_md(run.user)}",
           f"- **Ended:** {run.ended_at or '—'}",
           f"- **Status:** {run.status}" + (f" — {_md(run.message)}" if run.message else ""),
           f"- **Plan hash:** `{run.plan_hash}`",
           f"- **Environments locked:** {run.lock_env or '—'}", ""]
    if plan_text:
        out += ["## Plan", "", "```", plan_text, "```", ""]
    out += ["## Approvals and checklist evidence", ""]
    if detail.approvals:
        out += ["| What | By | When | Ticket | Note |", "|---|---|---|---|---|"]
        for a in detail.approvals:
            what = f"{a.step_id}" + (f" / {a.item}" if a.item else "")
            if a.plan_hash:
                what += f" (given to plan `{a.plan_hash[:12]}`)"
            out.append(f"| {_md(what)} | {_md(a.by)} | {a.at} | {_md(a.ticket) or '—'} "
                       f"| {_md(a.note) or '—'} |")
    else:
        out.append("No approvals were recorded.")
    evidence = [(s.step_id, s.result) for s in detail.steps.values()
                if isinstance(s.result, dict) and "items" in s.result]
    for step_id, result in evidence:
        out += ["", f"### Checklist `{step_id}`", "", "| Item | Evidence |", "|---|---|"]
        for item_id, ev in result["items"].items():
            out.append(f"| {_md(item_id)}: {_md(ev.get('text', ''))} | {_md(_evidence(ev))} |")
    out += ["", "## Steps", "", "| Step | Status | Attempts | Started | Ended | Error |",
            "|---|---|---|---|---|---|"]
    for s in detail.steps.values():
        out.append(f"| `{s.step_id}` | {s.status} | {s.attempts} | {s.started_at} "
                   f"| {s.ended_at or '—'} | {_md(s.error) or '—'} |")
    out += ["", "## Journal", "", "| # | When | What | Hash |", "|---|---|---|---|"]
    for rec in journal:
        out.append(f"| {rec.seq} | {rec.at} | {rec.kind} {_md(_brief(rec.data))} "
                   f"| `{rec.hash[:16]}` |")
    return "\n".join(out) + "\n"


def _evidence(ev: dict[str, Any]) -> str:
    kind = ev.get("kind", "attest")
    if kind == "attest":
        return f"attested by {ev.get('by')} at {ev.get('at')}" + \
            (f": {ev['note']}" if ev.get("note") else "")
    if kind == "approval":
        people = ", ".join(f"{a['by']} ({a.get('ticket') or 'no ticket'})"
                           for a in ev.get("approvals", []))
        return f"gate {ev.get('gate')}: {people}"
    return f"{'passed' if ev.get('passed') else 'failed'}: {ev.get('detail', '')}"


def _brief(data: dict[str, Any]) -> str:
    keys = ("step", "status", "env", "by", "user", "item", "reason", "runbook", "os_user",
            "host")
    picked = {k: data[k] for k in keys if data.get(k)}
    return json.dumps(picked, sort_keys=True) if picked else ""


def _params(params: dict[str, Any]) -> str:
    return shown(", ".join(f"`{k}={v}`" for k, v in params.items()) or "(none)")


def _md(text: Any) -> str:
    return shown(str(text or "").replace("|", "\\|").replace("\n", "<br>"))
