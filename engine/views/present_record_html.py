"""The change record of a run, and a plan before its approval, as printable HTML pages for the
CAB: the same content as the markdown (``present_record``, ``present.plan_markdown``) plus the
overlay diff a run made, laid out to read on a screen and to print (a print stylesheet). Pure
functions of what ``api.change_record`` and ``api.plan`` return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.store import StepRecord
from engine.trust import signatures
from engine.views import release
from engine.views.html_page import code, esc, page, pre, table
from engine.views.present import _details, drift_lines, file_diffs, plan_dict, wait_commands
from engine.views.present_record import _brief, _evidence, approved_what
from engine.views.records import ChangeRecord, PlanReport


def record_html(record: ChangeRecord, plan_text: str | None) -> str:
    detail = record.detail
    run = detail.run
    params = ", ".join(f"{k}={v}" for k, v in run.params.items()) or "(none)"
    facts = [("Runbook", f"{code(run.runbook)} <span class=\"mute\">sha256 "
                         f"{esc(run.runbook_sha[:16])}…</span>"),
             ("Parameters", code(params)),
             ("Started", f"{esc(run.started_at)} by {esc(run.user)}"),
             ("Ended", esc(run.ended_at or "—")),
             ("Status", f"<strong>{esc(run.status)}</strong>"
                        + (f" — {esc(run.message)}" if run.message else "")),
             ("Plan hash", code(run.plan_hash)),
             ("Environments locked", esc(run.lock_env or "—"))]
    body = [f"<h1>Change record: run {code(run.id)}</h1>",
            table(["", ""], ([f"<strong>{k}</strong>", v] for k, v in facts), cls="facts"),
            "<h2>Plan</h2>",
            pre(plan_text) if plan_text else
            '<p class="mute">The runbook is gone or changed since the run: its plan cannot be '
            "shown as it was; the steps and the journal below tell what ran.</p>",
            "<h2>Overlay diff</h2>", *_diffs(detail.steps.values()),
            "<h2>Approvals</h2>", _approvals(record), *_signatures(record)]
    if detail.waits:
        body += ["<h2>Waiting for</h2>", "<ul>" + "".join(
            f'<li><code class="cmd">{esc(c)}</code></li>'
            for c in wait_commands(run.id, detail.waits)) + "</ul>"]
    for kind, env, rows, rest in release.changes(record.journal):
        body += [f"<h2>The {esc(kind)} of {esc(env)}</h2>",
                 table(["Name", "Value"], ([code(k), code(v)] for k, v in rest.items()))]
        if rows:
            body.append(_services(rows))
    body += ["<h2>Checklist evidence</h2>", *_evidence_tables(detail.steps.values()),
             "<h2>Steps</h2>", table(
                 ["Step", "Status", "Attempts", "Started", "Ended", "Time", "Error"],
                 ([code(s.step_id), esc(s.status), esc(s.attempts), esc(s.started_at),
                   esc(s.ended_at or "—"), esc(_seconds(s)), esc(s.error or "—")]
                  for s in detail.steps.values())),
             "<h2>Journal</h2>", table(
                 ["#", "When", "What", "Hash"],
                 ([esc(j.seq), esc(j.at), f"{esc(j.kind)} <span class=\"mute\">"
                   f"{esc(_brief(j.data))}</span>", code(j.hash[:16])]
                  for j in record.journal))]
    return page(f"Change record {run.id}", body)


def _services(rows: dict[str, dict[str, Any]]) -> str:
    """A release's values, a row per service."""
    keys, lines = release.table(rows)
    return table(["Service", "Change", *(esc(k) for k in keys)],
                 ([esc(name), esc(what or "—"), *(code(v) for v in values)]
                  for name, what, values in lines), cls="services")


def _approvals(record: ChangeRecord) -> str:
    given = record.detail.given
    if not given:
        return '<p class="mute">No approvals were recorded.</p>'
    rows = []
    for g in given:
        what = approved_what(g, code, lambda text: f"<strong>{esc(text)}</strong>")
        rows.append([what, esc(g.text or "—"), esc(g.by), esc(g.role or "—"),
                     esc(g.ticket or "—"), esc(g.at), esc(g.note or "—")])
    return table(["What", "Item", "By", "Role", "Ticket", "When", "Note"], rows,
                 cls="approvals")


def _signatures(record: ChangeRecord) -> list[str]:
    signed = signatures.signed_groups(record.detail.approvals)
    if not signed:
        return []
    out = ["<h3>Signatures</h3>", "<p>Each signed approval was verified with "
           "<code>ssh-keygen -Y verify</code> before it was recorded, and <code>runbook audit "
           "verify</code> checks it again. To check one by hand, run its commands in an empty "
           "folder (the payload is the exact text signed), and compare the key's fingerprint "
           "with the keys the inventory lists for the person.</p>"]
    for a in signed:
        what = f"gate {code(a.item)}" if not a.step_id else f"step {code(a.step_id)}"
        out += [f"<p><strong>{esc(a.by)}</strong>, {what}, {esc(a.at)}: key "
                f"{code(a.fingerprint)}</p>", pre(signatures.by_hand(a))]
    return out


def _evidence_tables(steps: Iterable[StepRecord]) -> list[str]:
    out = []
    for s in steps:
        items = s.result.get("items") if isinstance(s.result, dict) else None
        if not isinstance(items, dict):
            continue
        out.append(f"<h3>Checklist {code(s.step_id)}</h3>")
        out.append(table(["Item", "", "Evidence"], (
            [f"{code(item_id)} {esc(ev.get('text', ''))}",
             '<span class="ok">✓</span>' if ev.get("passed", True) else
             '<span class="bad">✗</span>', esc(_evidence(ev))]
            for item_id, ev in items.items() if isinstance(ev, dict))))
    return out or ['<p class="mute">The run has no checklist.</p>']


def _diffs(steps: Iterable[StepRecord]) -> list[str]:
    """The file diffs the run's playbooks reported (the overlay's kustomization)."""
    out = []
    for s in steps:
        results = s.result.get("results") if isinstance(s.result, dict) else None
        for task, res in (results or {}).items() if isinstance(results, dict) else ():
            for diff in _file_diffs(res):
                out.append(f"<h3>{code(s.step_id)}: {esc(task)}</h3>{pre(diff)}")
    return out or ['<p class="mute">The run changed no overlay (yet).</p>']


def _file_diffs(res: Any) -> list[str]:
    if not isinstance(res, dict) or not res.get("changed"):
        return []
    found = file_diffs(res)
    if not found and isinstance(res.get("file"), str) and res.get("image"):
        # Ansible keeps a module's diff only in --diff mode: the image set in the overlay
        # (the kustomize_image module's result) says the same.
        found.append(f"--- {res['file']}\n+++ {res['file']}\n"
                     f"-image: {res.get('previous') or '(none)'}\n+image: {res['image']}")
    return found


def _seconds(s: StepRecord) -> str:
    from engine.trust.gates import parse_time

    if not s.ended_at:
        return "—"
    try:
        took = (parse_time(s.ended_at) - parse_time(s.started_at)).total_seconds()
    except ValueError:
        return "—"
    return f"{took:.1f} s"


def plan_html(report: PlanReport) -> str:
    """The plan for the CAB's review: inputs, bound values, drift, each step with what it
    will do and what the dry run found, and the approvals already given to its hash."""
    data = plan_dict(report)
    params = ", ".join(f"{k}={v}" for k, v in data["params"].items()) or "(none)"
    facts = [("Runbook", f"{code(data['runbook'])} <span class=\"mute\">"
                         f"{esc(data['path'])}</span>"),
             ("Inventory", esc(data["inventory"] or "(none)")),
             ("Parameters", code(params)),
             ("Plan hash", code(data["plan_hash"])),
             ("Dry run", f"<strong>{esc(data['status'])}</strong>"
                         + (f" — {esc(data['message'])}" if data["message"] else ""))]
    body = [f"<h1>Change plan: {code(data['runbook'])}</h1>",
            table(["", ""], ([f"<strong>{k}</strong>", v] for k, v in facts), cls="facts")]
    if data["bound"]:
        body += ["<h2>Bound values</h2>",
                 "<p>Resolved by this dry run; the run resolves them again and an approval of "
                 "this plan counts only if they are the same.</p>",
                 table(["Name", "Value"], ([code(k), code(v)] for k, v in
                                           release.by_service(data["bound"])[1].items()))]
        services = release.by_service(data["bound"])[0]
        if services:
            body += ["<h3>Per service</h3>", _services(services)]
    if report.drift:
        body += ["<h2>Drift</h2>", "<ul>" + "".join(
            f"<li>{esc(line)}</li>" for line in drift_lines(report.drift)) + "</ul>"]
    rows, n = [], 0
    for step in data["steps"]:
        if step["depth"] == 0:
            n += 1
        dry = step["dry_run"]
        rows.append([esc(n) if step["depth"] == 0 else "↳ on failure",
                     f"{code(step['id'])} {esc(step['name'])}", esc(step["type"]),
                     "<br>".join(esc(d) for d in _details(step, with_dry_run=False)) or "—",
                     "—" if dry is None else esc(dry["status"] + (
                         f": {dry['message']}" if dry["message"] else ""))])
    body += ["<h2>Steps</h2>",
             table(["#", "Step", "Type", "What it will do", "Dry run"], rows, cls="steps")]
    if data["approvals"]:
        body += ["<h2>Approvals given to this plan</h2>", table(
            ["Gate", "Item", "By", "Role", "Ticket", "When"],
            ([code(g["gate"]), esc(g["text"] or "—"), esc(g["by"]), esc(g["role"] or "—"),
              esc(g["ticket"] or "—"), esc(g["at"])] for g in data["approvals"]))]
    body.append("<p>Approving this plan approves exactly these inputs: the same runbook, "
                "inventory, parameters and bound values give the same hash.</p>")
    return page(f"Change plan {data['runbook']} {data['plan_hash'][:12]}", body)
