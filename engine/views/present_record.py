"""The markdown change record of a run, for the CAB ticket: what ran, who approved what (the
gate or checklist item, the person, their role, the ticket, the time), with which evidence,
and the journal entries. A pure function of what ``api.change_record`` returns."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from engine.store import ApprovalRecord
from engine.system.identity import shown
from engine.trust import signatures
from engine.trust.approval_info import Given
from engine.views import release
from engine.views.present import md_cell
from engine.views.records import ChangeRecord


def markdown(record: ChangeRecord, plan_text: str | None) -> str:
    detail, journal = record.detail, record.journal
    run = detail.run
    out = [f"# Change record: run `{run.id}`", "",
           f"- **Runbook:** `{run.runbook}` (sha256 `{run.runbook_sha[:16]}…`)",
           f"- **Parameters:** {_params(run.params)}",
           f"- **Started:** {run.started_at} by {md_cell(run.user)}",
           f"- **Ended:** {run.ended_at or '—'}",
           f"- **Status:** {run.status}" + (f" — {md_cell(run.message)}" if run.message else ""),
           f"- **Plan hash:** `{run.plan_hash}`",
           f"- **Environments locked:** {run.lock_env or '—'}", ""]
    if plan_text:
        out += ["## Plan", "", "```", plan_text, "```", ""]
    out += ["## Approvals and checklist evidence", ""]
    if detail.given:
        out += ["| What | Item | By | Role | Ticket | When | Note |",
                "|---|---|---|---|---|---|---|"]
        for g in detail.given:
            what = approved_what(g, lambda text: f"`{text}`", lambda text: f"**{text}**")
            out.append(f"| {md_cell(what)} | {md_cell(g.text) or '—'} | {md_cell(g.by)} "
                       f"| {md_cell(g.role) or '—'} | {md_cell(g.ticket) or '—'} | {g.at} "
                       f"| {md_cell(g.note) or '—'} |")
    else:
        out.append("No approvals were recorded.")
    out += _signatures(detail.approvals)
    evidence = [(s.step_id, s.result) for s in detail.steps.values()
                if isinstance(s.result, dict) and "items" in s.result]
    for step_id, result in evidence:
        out += ["", f"### Checklist `{step_id}`", "", "| Item | Evidence |", "|---|---|"]
        for item_id, ev in result["items"].items():
            out.append(f"| {md_cell(item_id)}: {md_cell(ev.get('text', ''))} "
                       f"| {md_cell(_evidence(ev))} |")
    for kind, env, rows, rest in release.changes(journal):
        out += ["", f"## The {md_cell(kind)} of {md_cell(env)}", ""]
        out += [f"- `{md_cell(k)}`: `{md_cell(v)}`" for k, v in rest.items()]
        if rows:
            out += ["", *release.markdown(rows, md_cell)]
    out += ["", "## Steps", "", "| Step | Status | Attempts | Started | Ended | Error |",
            "|---|---|---|---|---|---|"]
    for s in detail.steps.values():
        out.append(f"| `{s.step_id}` | {s.status} | {s.attempts} | {s.started_at} "
                   f"| {s.ended_at or '—'} | {md_cell(s.error) or '—'} |")
    out += ["", "## Journal", "", "| # | When | What | Hash |", "|---|---|---|---|"]
    for rec in journal:
        out.append(f"| {rec.seq} | {rec.at} | {rec.kind} {md_cell(_brief(rec.data))} "
                   f"| `{rec.hash[:16]}` |")
    return "\n".join(out) + "\n"


def approved_what(given: Given, code: Callable[[str], str],
                  strong: Callable[[str], str]) -> str:
    """What an approval was given to, in the change record's words (``code`` and ``strong``
    mark up a name and a warning, as markdown or HTML); not counted without its journal
    record."""
    if given.gate:
        what = f"gate {code(given.gate)}" + (f" (given to plan {code(given.plan_hash[:12])})"
                                             if given.plan_hash else "")
    else:
        what = f"step {code(given.step_id)}" + (f" / {code(given.item)}" if given.item else "")
    if not given.recorded:
        what += " — " + strong("not counted: no journal record")
    return what


def _signatures(approvals: Sequence[ApprovalRecord]) -> list[str]:
    """Each signature, its signer's key, and how anyone checks it with ssh-keygen alone."""
    signed = signatures.signed_groups(approvals)
    if not signed:
        return []
    out = ["", "### Signatures", "",
           "Each signed approval was verified with `ssh-keygen -Y verify` before it was "
           "recorded, and `runbook audit verify` checks it again. To check one by hand, run "
           "its commands in an empty folder (the payload is the exact text signed), and "
           "compare the key's fingerprint with the keys the inventory lists for the person."]
    for a in signed:
        what = f"gate `{a.item}`" if not a.step_id else f"step `{a.step_id}`"
        out += ["", f"**{md_cell(a.by)}**, {what}, {a.at}: key `{a.fingerprint}` "
                f"(`{md_cell(a.signer_key)}`)", "", "```sh", signatures.by_hand(a), "```"]
    return out


def _evidence(ev: dict[str, Any]) -> str:
    kind = ev.get("kind", "attest")
    if kind == "attest":
        return f"attested by {ev.get('by')} at {ev.get('at')}" + \
            (f" ({ev['ticket']})" if ev.get("ticket") else "") + \
            (f": {ev['note']}" if ev.get("note") else "")
    if kind == "approval":
        people = ", ".join(f"{a['by']} at {a.get('at')} ({a.get('ticket') or 'no ticket'})"
                           for a in ev.get("approvals", []))
        role = f", role {ev['role']}" if ev.get("role") else ""
        return f"gate {ev.get('gate')}{role}: {people or 'not approved'}"
    return f"{'passed' if ev.get('passed') else 'failed'}: {ev.get('detail', '')}"


def _brief(data: dict[str, Any]) -> str:
    keys = ("step", "status", "env", "by", "user", "item", "reason", "runbook", "os_user",
            "host")
    picked = {k: data[k] for k in keys if data.get(k)}
    return json.dumps(picked, sort_keys=True) if picked else ""


def _params(params: dict[str, Any]) -> str:
    return shown(", ".join(f"`{k}={v}`" for k, v in params.items()) or "(none)")

