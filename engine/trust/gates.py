"""Checklist items and the evidence that each is satisfied. Pure functions of what the store
holds and the time, so that plan-time and run-time answers are the same given the same facts.

Three kinds of item: ``attest`` (a named person signs it off), ``check`` (automated: a command,
an HTTP probe, a soak time from the promotion history, a maintenance window, a notification
this run delivered) and ``approval``
(a gate such as ``cab`` that a quorum of distinct people with the right role must approve).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.store import ApprovalRecord, HistoryRecord, PlanRecord

DEFAULT_EXPIRY_HOURS = 24.0
# History kinds that change the image an environment runs.
CHANGE_KINDS = ("promotion", "hotfix", "rollback")


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    kind: str  # attest | check | approval
    spec: Mapping[str, Any] = field(default_factory=dict)
    signed: bool = False  # an approval of it must be signed (engine.trust.signatures)


@dataclass(frozen=True)
class Evidence:
    item: Item
    satisfied: bool
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.item.text, "kind": self.item.kind, "passed": self.satisfied,
                "detail": self.detail, **self.data}


def items_of(raw: Any) -> list[Item]:
    """The checklist items of an approval step; a plain string is an attested item."""
    if not raw:
        return []
    if not isinstance(raw, list):
        raise TypeError("approval items must render to a list")
    out = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            out.append(Item(str(entry), str(entry), "attest"))
            continue
        kind = next((k for k in ("check", "approval") if k in entry), "attest")
        gate = entry.get("approval") if isinstance(entry.get("approval"), Mapping) else {}
        signed = "required" in (entry.get("signed"), (gate or {}).get("signed"))
        out.append(Item(str(entry["id"]), str(entry["text"]), kind, entry.get(kind) or {},
                        signed and kind != "check"))
    return out


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def window_problem(window: Mapping[str, Any]) -> tuple[str, str] | None:
    """The field of an inventory's maintenance window that cannot be used, and why; checked
    when the inventory is loaded so that a bad date is not found only when a gate needs it."""
    times: list[datetime] = []
    for key in ("start", "end"):
        text = str(window[key])
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
        try:
            when = parse_time(text)
        except ValueError:
            return key, (f"{key} {shown} is not an ISO 8601 date and time "
                         "(such as 2026-11-28T22:00:00Z)")
        if when.tzinfo is None:  # cannot be compared with the clock's aware time
            return key, f"{key} {shown} has no time zone (end it with Z or +HH:MM)"
        times.append(when)
    if times[1] <= times[0]:
        return "end", "the window ends before it starts"
    return None


def not_recorded(approval: ApprovalRecord) -> str:
    """Why an approval in the table is not counted: the journal does not give it."""
    return (f"{approval.by}'s approval is not counted: the audit journal has no record of it "
            "(it was written to the approvals table alone; `runbook audit verify` reports it)")


def attest(item: Item, approvals: Sequence[ApprovalRecord],
           unrecorded: Sequence[ApprovalRecord] = ()) -> Evidence:
    mine = [a for a in approvals if a.item == item.id and (a.signature or not item.signed)]
    if not mine:
        ignored = [not_recorded(a) for a in unrecorded if a.item == item.id]
        return Evidence(item, False, "; ".join(
            ["not attested yet" + (" with a signature" if item.signed else ""), *ignored]))
    first = mine[0]
    return Evidence(item, True, f"attested by {first.by}" + (" (signed)" if first.signature
                                                              else ""),
                    # The approval holds the rest (its key's fingerprint, its signature).
                    {"by": first.by, "at": first.at,
                     **({"note": first.note} if first.note else {}),
                     **({"ticket": first.ticket} if first.ticket else {})})


@dataclass(frozen=True)
class GateContext:
    starter: str
    plan_hash: str
    runbook_sha: str
    inventory_sha: str
    params: Mapping[str, Any]
    people: Mapping[str, Any]
    expiry_hours: float
    now: datetime
    run_id: str = ""
    bound: Mapping[str, Any] = field(default_factory=dict)  # as this run resolved them
    # The run that used each approval given to this plan, by (gate, person).
    used: Mapping[tuple[str, str], str] = field(default_factory=dict)


def gate(item: Item, run_approvals: Sequence[ApprovalRecord],
         plan_approvals: Sequence[tuple[ApprovalRecord, PlanRecord]],
         ctx: GateContext, unrecorded: Sequence[ApprovalRecord] = ()) -> Evidence:
    """A quorum of distinct, eligible people approved this gate for this run or its plan;
    ``unrecorded`` (approvals without their journal record) are named, never counted."""
    name = str(item.spec["gate"])
    quorum = int(item.spec.get("quorum", 1))
    counted: dict[str, ApprovalRecord] = {}
    notes: list[str] = [not_recorded(a) for a in unrecorded if a.item == name and
                        (not a.plan_hash or a.plan_hash == ctx.plan_hash)]
    offered = [a for a in run_approvals if a.item == name] + \
        [a for a, p in plan_approvals if a.item == name and p.hash == ctx.plan_hash]
    for approval in offered:
        why_not = _ineligible(approval, item, ctx) or _used(approval, name, ctx)
        if why_not:
            notes.append(why_not)
        else:
            counted.setdefault(approval.by, approval)
    for approval, plan in plan_approvals:
        if approval.item == name and plan.hash != ctx.plan_hash:
            notes.append(f"{approval.by} approved plan {plan.hash[:12]}, not this one: "
                         f"{_what_changed(plan, ctx)}")
    people = sorted(counted)
    data = {"gate": name, "quorum": quorum, "role": item.spec.get("role") or "",
            "required_ticket": bool(item.spec.get("required_ticket")),
            "plan_hash": ctx.plan_hash, "bound": dict(ctx.bound),
            "approvals": [{"by": a.by, "at": a.at, "ticket": a.ticket, "note": a.note,
                           "plan_hash": a.plan_hash,
                           **({"fingerprint": a.fingerprint} if a.signature else {})}
                          for a in counted.values()]}
    detail = f"{len(people)} of {quorum} approvals" + (f" ({', '.join(people)})"
                                                       if people else "")
    if notes:
        detail += "; " + "; ".join(dict.fromkeys(notes))
    return Evidence(item, len(people) >= quorum, detail, data)


def _used(approval: ApprovalRecord, gate_name: str, ctx: GateContext) -> str:
    """An approval given to a plan approves one run: the first whose gate passes with it."""
    user = ctx.used.get((gate_name, approval.by)) if approval.plan_hash else None
    if user and user != ctx.run_id:
        return (f"{approval.by}'s approval of plan {approval.plan_hash[:12]} was already used "
                f"by run {user}")
    return ""


def _ineligible(approval: ApprovalRecord, item: Item, ctx: GateContext) -> str:
    if approval.by == ctx.starter:
        return f"{approval.by} started this run and cannot approve it"
    if item.signed and not approval.signature:
        return f"{approval.by}'s approval is not signed, and {item.spec['gate']} requires it"
    expires = parse_time(approval.at) + timedelta(hours=ctx.expiry_hours)
    if ctx.now >= expires:
        return f"{approval.by}'s approval expired at {expires.isoformat(timespec='seconds')}"
    return eligible(approval.by, item, ctx.people)


def eligible(person: str, item: Item, people: Mapping[str, Any]) -> str:
    """Why ``person`` may not approve this gate, or '' if they may."""
    approvers = item.spec.get("approvers")
    role = item.spec.get("role")
    if approvers and person not in approvers:
        return f"{person} is not an approver of {item.spec['gate']}"
    if role and role not in (people.get(person) or {}).get("roles", []):
        return f"{person} does not have the {role} role"
    return ""


def _what_changed(plan: PlanRecord, ctx: GateContext) -> str:
    changes = []
    if plan.runbook_sha != ctx.runbook_sha:
        changes.append("the runbook changed")
    if plan.inventory_sha != ctx.inventory_sha:
        changes.append("the inventory changed")
    for key in sorted(set(plan.params) | set(ctx.params)):
        old, new = plan.params.get(key), ctx.params.get(key)
        if old != new:
            changes.append(f"{key} was {old!r}, now {new!r}")
    changes += describe_mismatch(plan.bound, ctx.bound)
    return ", ".join(changes) or "different inputs"


def describe_mismatch(planned: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How the bound values differ from the plan's; of a value per service (a mapping by
    service name), the services whose value differs, by name."""
    changes = []
    for key in sorted(set(planned) | set(now)):
        old, new = planned.get(key), now.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += [f"{key} of {name} was {old.get(name)!r} when the plan was made, "
                        f"now {new.get(name)!r}" for name in sorted(set(old) | set(new))
                        if old.get(name) != new.get(name)]
        elif old != new:
            changes.append(f"{key} was {old!r} when the plan was made, now {new!r}")
    return changes


def soak(item: Item, history: Sequence[HistoryRecord], now: datetime,
         running: Mapping[str, Any] | None = None) -> Evidence:
    """The environment has run the same image for long enough: the time since its last
    recorded change (a promotion, a hotfix or a rollback: each restarts the clock), from the
    engine's own history, newest first. With ``running`` (the image, and digest, the
    environment runs now, as the cluster and ECR answer), that change must be to that image:
    soak time of another image proves nothing."""
    env, hours = str(item.spec["env"]), float(item.spec["hours"])
    changes = [h for h in history if h.env == env and h.kind in CHANGE_KINDS]
    if isinstance((running or {}).get("image"), Mapping):
        return _soak_of_set(item, env, hours, changes, now, running or {})
    if not changes:
        return Evidence(item, False, f"no promotion of {env} is recorded")
    last = changes[0]
    if not last.data.get("image"):
        return Evidence(item, False, f"{env} changed at {last.at} ({last.kind} by run "
                                     f"{last.run_id}) to an image that was not recorded",
                        {"since": last.at, "run_id": last.run_id})
    mismatch = _not_running(env, last, running or {})
    if mismatch:
        return Evidence(item, False, mismatch, {"since": last.at, "run_id": last.run_id,
                                                "image": last.data.get("image"),
                                                "running": dict(running or {})})
    ran = (now - parse_time(last.at)).total_seconds() / 3600
    digest = last.data.get("digest")
    detail = (f"{env} has run {last.data['image']}" + (f" ({digest})" if digest else "")
              + f" since {last.at}, its last recorded {last.kind} ({ran:.1f} h of {hours:g} h)")
    return Evidence(item, ran >= hours, detail,
                    {"since": last.at, "hours": round(ran, 2), "digest": digest,
                     "image": last.data.get("image"), "kind": last.kind,
                     "run_id": last.run_id})


def changed_services(record: HistoryRecord) -> list[str]:
    """The services a recorded change changed: those it names as ``changed`` (a release), else
    every service of its image mapping; a change of one image without names, none."""
    data = record.data
    if isinstance(data.get("changed"), list) and data.get("services"):
        return [str(n) for n in data["changed"] if str(n)]
    image = data.get("image")
    return [str(n) for n in image] if isinstance(image, Mapping) else []


def _of(value: Any, service: str) -> Any:
    return value.get(service) if isinstance(value, Mapping) else value


def _soak_of_set(item: Item, env: str, hours: float, changes: Sequence[HistoryRecord],
                 now: datetime, running: Mapping[str, Any]) -> Evidence:
    """The soak of a release: the set of images ``env`` runs has run together since the
    newest recorded change of any of them, and each one's last recorded change is to the
    image (and digest) it runs now. The detail names the service whose change restarted the
    clock."""
    images: Mapping[str, Any] = running["image"]
    digests: Mapping[str, Any] = running.get("digest") or {}
    last: dict[str, HistoryRecord] = {}
    for record in changes:  # newest first
        for name in changed_services(record):
            if name in images and name not in last:
                last[name] = record
        if len(last) == len(images):
            break
    missing = [n for n in images if n not in last]
    if missing:
        return Evidence(item, False, f"no change of {', '.join(missing)} in {env} is recorded")
    for name, record in last.items():
        image, digest = _of(record.data.get("image"), name), _of(record.data.get("digest"), name)
        if image != images[name] or (digest and digests.get(name)
                                      and digest != digests[name]):
            return Evidence(item, False,
                            f"{env} {name} runs {images[name]}"
                            + (f" ({digests[name]})" if digests.get(name) else "")
                            + f" now, not {image or 'the image'} of its last recorded "
                            f"{record.kind} at {record.at}: the soak time is not of this set",
                            {"since": record.at, "run_id": record.run_id, "service": name,
                             "running": dict(running)})
    name, newest = max(last.items(), key=lambda kv: parse_time(kv[1].at))
    ran = (now - parse_time(newest.at)).total_seconds() / 3600
    detail = (f"{env} has run this set ({', '.join(f'{n} {images[n]}' for n in images)}) "
              f"since {newest.at}, when the {newest.kind} of run {newest.run_id} changed "
              f"{name} ({ran:.1f} h of {hours:g} h)")
    return Evidence(item, ran >= hours, detail,
                    {"since": newest.at, "hours": round(ran, 2), "service": name,
                     "image": dict(images), "digest": dict(digests), "kind": newest.kind,
                     "run_id": newest.run_id})


def _not_running(env: str, last: HistoryRecord, running: Mapping[str, Any]) -> str:
    """Why the last recorded change of ``env`` is not of the image it runs now, or ''."""
    promoted, now_runs = last.data.get("image"), running.get("image")
    if now_runs and promoted != now_runs:
        return (f"{env} runs {now_runs} now, not {promoted or 'the image'} of its last "
                f"recorded {last.kind} at {last.at}: the soak time is not of this image")
    digest, now_digest = last.data.get("digest"), running.get("digest")
    if now_digest and digest and digest != now_digest:
        return (f"{env} runs {now_runs or 'its image'} at digest {now_digest} now, not "
                f"{digest} of its last recorded {last.kind} at {last.at}: the soak time is "
                "not of this image")
    return ""


def window(item: Item, windows: Sequence[Mapping[str, Any]], now: datetime) -> Evidence:
    env = str(item.spec["env"])
    for w in windows:
        start, end = parse_time(str(w["start"])), parse_time(str(w["end"]))
        if start <= now < end:
            return Evidence(item, True, f"inside the {env} window {w['start']} – {w['end']}"
                            + (f" ({w['ticket']})" if w.get("ticket") else ""),
                            {"window": dict(w)})
    upcoming = sorted((w for w in windows if parse_time(str(w["start"])) > now),
                      key=lambda w: parse_time(str(w["start"])))
    nxt = f"; next: {upcoming[0]['start']} – {upcoming[0]['end']}" if upcoming else \
        "; none is scheduled"
    return Evidence(item, False, f"now ({now.isoformat(timespec='minutes')}) is outside "
                                 f"the {env} maintenance windows{nxt}")


def notified(item: Item, results: Sequence[Mapping[str, Any]]) -> Evidence:
    """A notify step of this run delivered its message to the audience: the delivery (when,
    through which service, the title) is the evidence. ``results`` are the run's step
    results, in the order the steps ran."""
    audience = str(item.spec["audience"])
    tries = [(r, d) for r in results if r.get("notification")
             for d in r.get("deliveries") or () if d.get("audience") == audience]
    done = next(((r, d) for r, d in tries if d.get("delivered")), None)
    if done is not None:
        result, delivery = done
        return Evidence(item, True, f"{audience} told at {delivery['at']} through "
                                    f"{delivery['service']}: {result['title']}",
                        {"audience": audience, "at": delivery["at"],
                         "service": delivery["service"], "title": result["title"]})
    if tries:
        result, delivery = tries[-1]
        return Evidence(item, False, f"the message to {audience} ({result['title']}) was not "
                                     f"delivered: {delivery['problem']}",
                        {"audience": audience, "at": delivery["at"]})
    return Evidence(item, False, f"no message to {audience} was delivered by this run")


def probe(item: Item, run_command: Callable[[list[str], float], tuple[int, str]],
          fetch: Callable[[str], int | str]) -> Evidence:
    """A command's exit code or an HTTP status, as the item expects."""
    if "command" in item.spec:
        spec = item.spec["command"]
        rc, output = run_command([str(a) for a in spec["argv"]], float(spec.get("timeout", 60)))
        want = int(spec.get("expect_rc", 0))
        tail = output.strip().splitlines()[-1:] or [""]
        return Evidence(item, rc == want, f"{spec['argv'][0]} exited with {rc} (expected {want})"
                        + (f": {tail[0]}" if tail[0] else ""), {"rc": rc})
    spec = item.spec["http"]
    got = fetch(str(spec["url"]))
    want = int(spec.get("status", 200))
    return Evidence(item, got == want, f"{spec['url']} answered {got} (expected {want})",
                    {"status": got})
