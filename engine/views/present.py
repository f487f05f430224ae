"""Turn plans, runs and runbooks into text, markdown or JSON-ready dicts. Pure functions."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from engine.language.model import Runbook
from engine.run.execute import RunResult
from engine.status import RunStatus, StepStatus
from engine.steps import STEP_TYPES
from engine.steps.ansible.step import unified
from engine.store import HistoryRecord, RunRecord
from engine.system.identity import shown
from engine.trust.approval_info import Given, Wait, given_to_plan
from engine.views import release
from engine.views.drift import Drift
from engine.views.records import DeadEnd, PlanReport, RunDetail


def plan_dict(report: PlanReport) -> dict[str, Any]:
    plan = report.plan
    dry = {s.step_id: s for s in report.dry_run.steps}
    steps = []
    for p in plan.steps:
        outcome = dry.get(p.step.id)
        steps.append({
            "id": p.step.id, "type": p.step.type,
            "name": outcome.name if outcome is not None else p.name,
            "depth": p.depth,
            "when": p.when if p.step.when is not None else True,
            "rendered": _rendered(p, outcome, plan),
            "deferred_on": outcome.needs if outcome is not None else p.deferred_on,
            "dry_run": None if outcome is None else {
                "status": outcome.status, "message": outcome.message,
                "result": outcome.result},
        })
    given = given_to_plan({s.step_id: s.result or {} for s in report.dry_run.steps})
    return {"runbook": plan.runbook.name, "path": str(plan.runbook.path),
            "inventory": plan.inventory.name or None, "params": dict(plan.params),
            "plan_hash": plan.hash, "bound": dict(plan.bound), "status": report.dry_run.status,
            "message": report.dry_run.message, "steps": steps,
            "drift": [d.as_dict() for d in report.drift],
            "approvals": [g.as_dict() for g in given]}


def _rendered(p: Any, outcome: Any, plan: Any) -> Any:
    if outcome is not None and outcome.rendered is not None:
        return outcome.rendered
    return plan.redactor.value(p.rendered) if p.rendered is not None else None


def plan_text(report: PlanReport) -> str:
    data = plan_dict(report)
    lines = [f"Plan for runbook {data['runbook']}  (hash {data['plan_hash'][:16]})",
             f"params: {_params(data['params'])}"]
    if data["inventory"]:
        lines.append(f"inventory: {data['inventory']}")
    if data["bound"]:
        lines.append("bound (an approval of this plan is for these values, resolved now):")
        rows, rest = release.by_service(data["bound"])
        lines.extend(f"    {k}: {shown(v)}" for k, v in rest.items())
        for name, row in rows.items():
            what = release.state(row)
            lines.append(f"    {name}" + (f" ({what}):" if what else ":"))
            lines.extend(f"        {k}: {shown(v)}" for k, v in row.items() if k != "changed")
    if report.drift:
        lines.append("drift of the environments it changes (overlay, cluster, history):")
        lines.extend(f"    {line}" for line in drift_lines(report.drift))
    n = 0
    for step in data["steps"]:
        indent = "    " * step["depth"]
        if step["depth"] == 0:
            n += 1
            label = f"{n}."
        else:
            label = "on failure:"
        lines.append(f"{indent}{label} [{step['type']}] {step['id']}: {step['name']}")
        lines.extend(f"{indent}     {d}" for d in _details(step))
    if data["approvals"]:
        lines.append("approvals given to this plan:")
        lines.extend(f"    {given_line(Given(**g))}" for g in data["approvals"])
    if data["status"] in (RunStatus.FAILED, RunStatus.REFUSED):
        lines.append(f"the dry run {data['status']}: {data['message']}")
    return "\n".join(lines)


def plan_markdown(report: PlanReport) -> str:
    data = plan_dict(report)
    out = [f"# Change plan: `{data['runbook']}`", "",
           f"- **Plan hash:** `{data['plan_hash']}`",
           f"- **Runbook file:** `{data['path']}`",
           f"- **Inventory:** {data['inventory'] or '(none)'}",
           f"- **Parameters:** {_params(data['params'])}",
           f"- **Dry run:** {data['status']}"
           + (f" — {data['message']}" if data["message"] else ""), ""]
    if data["bound"]:
        out += ["## Bound values", "", "Resolved by this dry run; the run resolves them again "
                "and an approval of this plan counts only if they are the same.", "",
                "| Name | Value |", "|---|---|"]
        rows, rest = release.by_service(data["bound"])
        out += [f"| `{k}` | `{md_cell(v)}` |" for k, v in rest.items()]
        out.append("")
        if rows:
            out += ["Per service:", "", *release.markdown(rows, md_cell), ""]
    if report.drift:
        out += ["## Drift", "", "What the overlay, the cluster and the history say each "
                "environment it changes runs.", ""]
        out += [f"- {md_cell(line)}" for line in drift_lines(report.drift)]
        out.append("")
    out += ["## Steps", "", "| # | Step | Type | What it will do | Dry run |",
           "|---|---|---|---|---|"]
    n = 0
    for step in data["steps"]:
        if step["depth"] == 0:
            n += 1
            num = str(n)
        else:
            num = "↳ on failure"
        what = "<br>".join(md_cell(d) for d in _details(step, with_dry_run=False)) or "—"
        dry = step["dry_run"]
        dry_text = "—" if dry is None else md_cell(dry["status"] + (f": {dry['message']}"
                                                               if dry["message"] else ""))
        out.append(f"| {num} | `{step['id']}` {md_cell(step['name'])} | {step['type']} | {what} "
                   f"| {dry_text} |")
    if data["approvals"]:
        out += ["", "## Approvals given to this plan", "",
                "| Gate | Item | By | Role | Ticket | When |", "|---|---|---|---|---|---|"]
        out += [f"| `{md_cell(g['gate'])}` | {md_cell(g['text']) or '—'} | {md_cell(g['by'])} "
                f"| {md_cell(g['role']) or '—'} | {md_cell(g['ticket']) or '—'} "
                f"| {md_cell(g['at'])} |"
                for g in data["approvals"]]
    out += ["", "Approving this plan approves exactly these inputs: the same runbook, inventory, "
            "parameters and bound values give the same hash. An approval of a plan is used "
            "by the first run whose gate passes with it."]
    return "\n".join(out) + "\n"


def _details(step: dict[str, Any], *, with_dry_run: bool = True) -> list[str]:
    out: list[str] = []
    if step["when"] is False:
        out.append("skipped: its condition is false")
    elif step["when"] is None:
        out.append("runs if its condition holds at run time")
    spec = step["rendered"]
    if spec is None and step["deferred_on"]:
        out.append(f"rendered at run time (needs the result of {step['deferred_on']!r})")
    elif spec is None:
        out.append("not rendered: the dry run stopped before it")
    else:
        out.extend(_describe(step["type"], spec))
    dry = step["dry_run"]
    if with_dry_run and step["type"] == "approval" and dry is not None and \
            dry["status"] == StepStatus.WOULD_RUN:
        out.extend(dry["message"].splitlines()[1:])  # each item's evidence, as of now
    elif with_dry_run and dry is not None and \
            dry["status"] in (StepStatus.CHECKED, StepStatus.FAILED, StepStatus.REFUSED):
        text = f"dry run {dry['status']}" + (f": {dry['message']}" if dry["message"] else "")
        out.extend(text.splitlines())
    if dry is not None and step["type"] == "ansible":
        out.extend(_ansible_changes(dry.get("result") or {}))
    return out


def _ansible_changes(result: dict[str, Any]) -> list[str]:
    """What a check-mode playbook run says it would change, with file diffs."""
    out: list[str] = []
    for task, res in (result.get("results") or {}).items():
        if not isinstance(res, dict) or not res.get("changed"):
            continue
        out.append(f"would change: {task}")
        for diff in file_diffs(res):
            out.extend(f"  {line}" for line in diff.splitlines())
    return out


def file_diffs(res: dict[str, Any]) -> list[str]:
    """The unified file diffs a task's result holds: kept as unified diffs, or (records of
    earlier releases) as the whole file before and after. A module's object diff (the k8s
    apply's annotations) is noise here and is left out."""
    diffs = res.get("diff") or []
    found = []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        if not isinstance(diff, dict):
            continue
        if isinstance(diff.get("unified"), str):
            found.append(diff["unified"])
        elif isinstance(diff.get("before"), str) and isinstance(diff.get("after"), str):
            found.append(unified(diff)["unified"])
    return found


def _describe(kind: str, spec: dict[str, Any]) -> list[str]:
    step_type = STEP_TYPES.get(kind)
    return step_type.describe(spec) if step_type else [json.dumps(spec, default=str)]


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(none)"


def md_cell(text: Any) -> str:
    """Text for a markdown table cell: escaped for the terminal, no column or row breaks."""
    return shown(("" if text is None else str(text)).replace("|", "\\|").replace("\n", "<br>"))


def dead_end_text(dead: DeadEnd) -> str:
    if not dead.undone_by:
        return f"step {dead.failed} failed, and resuming would only fail again"
    return (f"step {dead.failed} failed and {', '.join(dead.undone_by)} undid its change, so "
            "resuming would only fail again")


def result_dict(result: RunResult) -> dict[str, Any]:
    return asdict(result)


def runs_table(runs: list[RunRecord]) -> str:
    if not runs:
        return "no runs yet"
    rows = [("RUN", "RUNBOOK", "STATUS", "STARTED", "BY", "PARAMS")]
    rows += [(r.id, r.runbook, r.status, r.started_at, shown(r.user), shown(_params(r.params)))
             for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                     + "  " + row[5] for row in rows)


def detail_text(detail: RunDetail) -> str:
    r = detail.run
    lines = [f"run {r.id}  runbook {r.runbook}  status {r.status}",
             f"started {r.started_at} by {shown(r.user)}"
             + (f", ended {r.ended_at}" if r.ended_at else ""),
             f"params: {shown(_params(r.params))}", f"plan hash: {r.plan_hash}"]
    if r.message:
        lines.append(f"message: {shown(r.message)}")
    lines.append("steps:")
    for s in detail.steps.values():
        extra = f" ({s.attempts} attempts)" if s.attempts > 1 else ""
        err = f": {shown(s.error)}" if s.error else ""
        lines.append(f"  {s.step_id:<24} {s.status:<12}{extra}{err}")
        for item_id, ev in (s.result.get("items") or {}).items():
            mark = "✓" if ev.get("passed", True) else " "
            lines.append(f"      [{mark}] {item_id}: "
                         f"{shown(ev.get('detail') or ev.get('by', ''))}")
            if ev.get("bound"):
                bound = ", ".join(f"{k}={v}" for k, v in ev["bound"].items())
                lines.append(f"          for plan {str(ev.get('plan_hash'))[:16]}: "
                             f"{shown(bound)}")
    if detail.given:
        lines.append("approvals:")
        lines.extend(f"  {given_line(g)}" for g in detail.given)
    if detail.waits:
        lines.append("waiting for, approve with:")
        lines.extend(f"  {c}" for c in wait_commands(r.id, detail.waits))
        lines.append(f"then: runbook resume {r.id}")
    elif r.status == RunStatus.WAITING:
        lines.append(f"what it waited for is given: runbook resume {r.id}")
    for e in detail.events:
        lines.append(f"event {e.kind} at {e.at}: {json.dumps(e.detail, sort_keys=True)}")
    return "\n".join(lines)


def detail_dict(detail: RunDetail) -> dict[str, Any]:
    return {"run": asdict(detail.run),
            "steps": [asdict(s) for s in detail.steps.values()],
            "approvals": [g.as_dict() for g in detail.given],
            "waiting_for": [{**w.as_dict(), "command": c} for w, c in
                            zip(detail.waits, wait_commands(detail.run.id, detail.waits),
                                strict=True)],
            "events": [asdict(e) for e in detail.events]}


def given_line(g: Given) -> str:
    """One approval: what it was for (with the item's text), who, their role, the ticket,
    when."""
    if g.gate:
        what = f"gate {g.gate}" + (f" (given to plan {g.plan_hash[:12]})" if g.plan_hash
                                   else "")
    elif g.item:
        what = f"{g.step_id} / {g.item}"
    else:
        what = f"step {g.step_id}"
    text = f" “{g.text}”" if g.text else ""
    role = f" (role {g.role})" if g.role else ""
    note = f": {g.note}" if g.note else ""
    signed = f", signed with {g.fingerprint}" if g.fingerprint else ""
    unrecorded = "" if g.recorded else \
        " — not counted: the audit journal has no record of it (runbook audit verify)"
    return shown(f"{what}{text}: {g.by}{role}, ticket {g.ticket or '—'}, at {g.at}{signed}"
                 f"{note}{unrecorded}")


def wait_commands(run_id: str, waits: Sequence[Wait]) -> list[str]:
    """The command that gives each thing a run waits for; NAME (and TICKET) to fill in."""
    run = shlex.quote(run_id)
    out = []
    for w in waits:
        if w.gate:
            ticket = " --ticket TICKET" if w.required_ticket else ""
            role = f" with the {w.role} role" if w.role else ""
            more = (f"1 more approval by another person{role}" if w.needed == 1 else
                    f"{w.needed} more approvals, each by another person{role}")
            out.append(f"runbook approve {run} --gate {shlex.quote(w.gate)} --by NAME{ticket}"
                       f"   # {more}")
        elif w.items:
            items = " ".join(f"--item {shlex.quote(i)}" for i in w.items)
            out.append(f"runbook approve {run} --step {shlex.quote(w.step_id)} {items} "
                       "--by NAME")
        else:
            out.append(f"runbook approve {run} --step {shlex.quote(w.step_id)} --by NAME")
    return [shown(c) for c in out]


def runbook_text(book: Runbook) -> str:
    lines = [f"{book.name}: {book.description}", f"file: {book.path}"]
    if book.params:
        lines.append("params:")
        for p in book.params:
            bits = [p.type]
            if p.required:
                bits.append("required")
            if p.default is not None:
                bits.append(f"default {p.default}")
            if p.enum:
                bits.append("one of " + "|".join(str(e) for e in p.enum))
            if p.minimum is not None:
                bits.append(f"at least {p.minimum}")
            if p.maximum is not None:
                bits.append(f"at most {p.maximum}")
            if p.secret:
                bits.append("secret, from the environment")
            if p.type == "boolean" and p.default is None:
                bits.append("default False")  # a switch not given is off
            lines.append(f"  {'/'.join(p.flags):<20} {', '.join(bits)}" +
                         (f"  {p.description}" if p.description else ""))
    lines.append("steps:")

    def walk(steps: Any, depth: int) -> None:
        for s in steps:
            lines.append(f"{'  ' * (depth + 1)}{s.id:<24} {s.type:<9} {s.name}")
            if s.on_failure:
                lines.append(f"{'  ' * (depth + 2)}on failure:")
                walk(s.on_failure, depth + 2)

    walk(book.steps, 0)
    return "\n".join(lines)


def runbook_dict(book: Runbook) -> dict[str, Any]:
    return {"name": book.name, "description": book.description, "path": str(book.path),
            "params": [asdict(p) for p in book.params],
            "steps": [{"id": s.id, "type": s.type, "name": s.name} for s in book.all_steps()]}


def history_text(records: Sequence[HistoryRecord]) -> list[str]:
    """A line for each record of the history; of a release, each service's values beneath."""
    lines = []
    for r in records:
        rows, rest = release.by_service(r.data)
        detail = " ".join(f"{k}={rest[k]}" for k in sorted(rest))
        lines.append(f"{r.at}  {r.kind:<10} {r.env:<8} by {shown(r.user):<10} run {r.run_id}  "
                     f"{shown(detail)}")
        for name, row in rows.items():
            what = release.state(row)
            values = " ".join(f"{k}={v}" for k, v in row.items() if k != "changed")
            lines.append(shown(f"    {name:<10} {what + ' ' if what else ''}{values}"))
    return lines


def drift_lines(found: Sequence[Drift]) -> list[str]:
    lines = []
    for d in found:
        if d.agrees:
            recorded = f" (last recorded: {d.history['kind']} at {d.history['at']})" \
                if d.history else " (no change recorded yet)"
            lines.append(f"{d.env}: agree on {release.images(d.cluster)}{recorded}")
        else:
            lines.extend(f"DRIFT {p}" for p in d.problems)
    return [shown(line) for line in lines]


def drift_text(found: Sequence[Drift]) -> str:
    rows = []
    for d in found:
        rows.append(f"{d.env:<10} {'ok' if d.agrees else 'DRIFT'}")
        last = d.history
        if last:
            how = f"({last['kind']} at {last['at']}, run {last['run_id']})"
            history: Any = {k: f"{v} {how}" for k, v in last["image"].items()} \
                if isinstance(last["image"], dict) else f"{last['image']} {how}"
        else:
            history = "no change recorded"
        per = {what: value for what, value in (("overlay", d.overlay), ("cluster", d.cluster),
                                               ("history", history)) if isinstance(value, dict)}
        if per:  # a release: each service's three records beneath it
            names = list(dict.fromkeys(n for value in per.values() for n in value))
            for name in names:
                rows.append(f"    {name}")
                for what, value in (("overlay", d.overlay), ("cluster", d.cluster),
                                    ("history", history)):
                    seen = value.get(name, "not changed by it" if what == "history" else "?") \
                        if isinstance(value, dict) else value
                    rows.append(f"        {what:<8} {seen if seen is not None else '?'}")
        else:
            for what, value in (("overlay", d.overlay), ("cluster", d.cluster),
                                ("history", history)):
                rows.append(f"    {what:<8} {value if value is not None else '?'}")
        rows.extend(f"    {p}" for p in d.problems)
    drifted = [d.env for d in found if not d.agrees]
    rows.append(f"drift in {', '.join(drifted)}" if drifted else
                "no drift: every overlay, cluster and history agree")
    return "\n".join(shown(r) for r in rows)
