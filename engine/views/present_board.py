"""The environment board as terminal text, JSON-ready data or one HTML page. Pure functions of
what ``api.board`` returns; the approve commands are the ones ``runbook status RUN`` shows."""

from __future__ import annotations

from typing import Any

from engine.store import RunRecord
from engine.system.identity import shown
from engine.trust.approval_info import Wait
from engine.views.board import Board, EnvRow, Waiting
from engine.views.html_page import code, esc, page, table
from engine.views.present import wait_commands


def board_dict(board: Board) -> dict[str, Any]:
    return {"inventory": board.inventory, "at": board.at,
            "environments": [row.as_dict() for row in board.rows],
            "waiting": [_waiting_dict(w) for w in board.waiting]}


def _waiting_dict(w: Waiting) -> dict[str, Any]:
    return {"run": w.run.id, "runbook": w.run.runbook, "params": w.run.params,
            "user": w.run.user, "started_at": w.run.started_at, "lock": w.run.lock_env,
            "waits": [{**x.as_dict(), "what": wait_text(x), "command": c}
                      for x, c in zip(w.waits, wait_commands(w.run.id, w.waits),
                                      strict=True)],
            "then": f"runbook resume {w.run.id}"}


def wait_text(w: Wait) -> str:
    """What one wait is for, in a few words."""
    if w.gate:
        role = f" with the {w.role} role" if w.role else ""
        ticket = ", a ticket required" if w.required_ticket else ""
        return f"gate {w.gate}: {w.needed} more approval{'s' if w.needed != 1 else ''}" \
            f"{role}{ticket}"
    if w.items:
        return f"step {w.step_id}: items {', '.join(w.items)}"
    return f"step {w.step_id}: an approval"


def _run_line(run: RunRecord | None) -> str:
    if run is None:
        return "none recorded"
    params = " ".join(f"--{k} {v}" for k, v in run.params.items())
    return f"{run.id} {run.runbook} {params} {run.status} (by {run.user}, {run.started_at})"


def _soak(row: EnvRow) -> str:
    return f"{row.soak_hours:g} h" if row.soak_hours is not None else "—"


def board_text(board: Board) -> str:
    lines = [f"board of inventory {board.inventory} at {board.at}"]
    for row in board.rows:
        d = row.drift
        lines.append(f"{row.env:<10} {d.mark}"
                     + (f"   locked by run {row.lock.run_id} ({row.lock.user}) since "
                        f"{row.lock.since}" if row.lock else ""))
        unread = "?" if d.checked else "(not read)"
        if isinstance(d.cluster, dict):  # a release: each service beneath
            lines.extend(f"    {'runs' if i == 0 else '':<9} {name:<10} {image}"
                         for i, (name, image) in enumerate(d.cluster.items()))
        else:
            lines.append(f"    runs      {d.cluster or unread}"
                         + (f"  digest {row.digest}" if row.digest else ""))
        if row.since:
            last = d.history or {}
            lines.append(f"    since     {row.since} ({last.get('kind')}, run "
                         f"{last.get('run_id')}), soaked {_soak(row)}")
        else:
            lines.append("    since     no recorded change of this image")
        if isinstance(d.overlay, dict):
            lines.append("    overlay   as the cluster" if d.overlay == d.cluster else
                         "    overlay   " + ", ".join(f"{n} {i}" for n, i in d.overlay.items()))
        else:
            lines.append(f"    overlay   {d.overlay or unread}")
        lines.extend(f"    {p}" for p in d.problems)
        lines.append(f"    last run  {_run_line(row.last_run)}")
        for w in row.waiting:
            lines.append(f"    waiting   run {w.run.id}: "
                         + "; ".join(wait_text(x) for x in w.waits))
    waiting = board.waiting
    if waiting:
        lines.append("waiting for approvals:")
    for w in waiting:
        params = " ".join(f"--{k} {v}" for k, v in w.run.params.items())
        lines.append(f"  run {w.run.id}: {w.run.runbook} {params}, started by {w.run.user} "
                     f"at {w.run.started_at}")
        lines.extend(f"    {c}" for c in wait_commands(w.run.id, w.waits))
        lines.append(f"    then: runbook resume {w.run.id}")
    return "\n".join(shown(line) for line in lines)


def board_html(board: Board, *, refresh: int | None = None) -> str:
    rows = []
    for row in board.rows:
        d = row.drift
        mark = '<span class="mark mute">not checked</span>' if not d.checked else \
            '<span class="mark ok">agrees</span>' if d.agrees else \
            '<span class="mark bad">DRIFT</span>'
        problems = "".join(f"<li>{esc(p)}</li>" for p in d.problems)
        since = (f"{_when(row.since)}<br><span class=\"mute\">{esc((d.history or {}).get('kind'))}"
                 f", run {esc((d.history or {}).get('run_id'))}</span>") if row.since else \
            '<span class="mute">no recorded change of this image</span>'
        last = row.last_run
        last_cell = (f"{code(last.id)}<br>{esc(last.runbook)} "
                     f"{esc(' '.join(f'--{k} {v}' for k, v in last.params.items()))}<br>"
                     f"<span class=\"{_status_class(last.status)}\">{esc(last.status)}</span>"
                     f" <span class=\"mute\">by {esc(last.user)}</span>") if last else \
            '<span class="mute">none</span>'
        lock = (f"{code(row.lock.run_id)}<br>{esc(row.lock.user)}<br>"
                f"<span class=\"mute\">since {_when(row.lock.since)}</span>") if row.lock else \
            '<span class="mute">free</span>'
        waits = "".join(f"<li>{code(w.run.id)}: {esc('; '.join(wait_text(x) for x in w.waits))}"
                        "</li>" for w in row.waiting)
        overlay = '<span class="mute">as the cluster</span>' \
            if d.overlay is not None and d.overlay == d.cluster else _image(d.overlay)
        rows.append([
            f"<strong>{esc(row.env)}</strong>",
            _image(d.cluster) + (f"<br><span class=\"mute\">{esc(row.digest)}</span>"
                                 if row.digest else ""),
            since, esc(_soak(row)), overlay,
            mark + (f"<ul>{problems}</ul>" if problems else ""),
            last_cell, lock, f"<ul>{waits}</ul>" if waits else '<span class="mute">—</span>'])
    body = [f"<h1>Environments of {esc(board.inventory)}</h1>",
            f'<p class="meta">read at {esc(board.at)}'
            + (f" · this page reloads every {int(refresh)} s" if refresh else "") + "</p>",
            table(["Environment", "Runs (image, digest)", "Since", "Soak", "Overlay",
                   "Overlay · cluster · history", "Last run", "Lock", "Waiting"], rows,
                  cls="board"),
            "<h2>Waiting for approvals</h2>"]
    waiting = board.waiting
    if not waiting:
        body.append('<p class="mute">No run is waiting for an approval.</p>')
    for w in waiting:
        run = w.run
        body.append(f'<section class="waiting" id="run-{esc(run.id)}">'
                    f"<h3>Run {code(run.id)}: {esc(run.runbook)} "
                    f"{esc(' '.join(f'--{k} {v}' for k, v in run.params.items()))}</h3>"
                    f'<p class="meta">started by {esc(run.user)} at {esc(run.started_at)}'
                    f"{' · locks ' + esc(run.lock_env) if run.lock_env else ''}</p><ul>")
        for x, command in zip(w.waits, wait_commands(run.id, w.waits), strict=True):
            body.append(f'<li><span class="wait">{esc(wait_text(x))}</span>'
                        f'<code class="cmd">{esc(command)}</code></li>')
        body.append(f'</ul><p>then: <code class="cmd">runbook resume {esc(run.id)}</code></p>'
                    "</section>")
    return page(f"Environments of {board.inventory}", body, refresh=refresh)


def _status_class(status: str) -> str:
    return {"done": "ok", "waiting": "wait", "running": "wait"}.get(status, "bad")


def _image(image: str | dict[str, str] | None) -> str:
    """An image reference that may break after each ``/`` (not inside a name or tag); of a
    release, each service's beneath the other."""
    if image is None:
        return '<span class="bad">?</span>'
    if isinstance(image, dict):
        return "<br>".join(f'<span class="service">{esc(name)}</span> {_image(one)}'
                           for name, one in image.items())
    return '<code class="image">' + "/<wbr>".join(esc(p) for p in image.split("/")) + \
        "</code>"


def _when(at: str) -> str:
    """A recorded time, to the minute (the exact value on hover)."""
    utc = at.endswith(("+00:00", "Z")) and len(at) >= 16 and at[10] == "T"
    short = at[:16].replace("T", " ") + " UTC" if utc else at
    return f'<span title="{esc(at)}">{esc(short)}</span>'
