"""``approval``: the run stops (exit 3) until people approve it.

Without ``items``, one approval of the step by someone other than the person who started the
run. With ``items`` (a checklist), each item must be satisfied: attested by a person, passed
as an automated check, or approved by a gate's quorum. Checks are evaluated again each time;
a failing check fails the step (exit 1) with its evidence, and a resume evaluates it anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput, StepFailed, WaitingForApproval
from engine.language import services
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import APPROVALS, STORE, StepType
from engine.system import proc
from engine.trust import gates

if TYPE_CHECKING:
    from engine.steps.base import StepContext


def run(ctx: StepContext) -> Outcome:
    prompt = str(ctx.spec["prompt"])
    items = gates.items_of(ctx.spec.get("items"))
    mine = [a for a in ctx.approvals if a.step_id == ctx.step.id or not a.step_id]
    if not items:
        if ctx.dry_run:
            return Outcome(StepStatus.WOULD_RUN, message=f"waits for approval: {prompt}")
        first = next((a for a in mine if a.step_id == ctx.step.id and not a.item), None)
        if first is None:
            ignored = [a for a in ctx.unrecorded if a.step_id == ctx.step.id and not a.item]
            raise WaitingForApproval(ctx.step.id, "; ".join(
                [prompt, *(gates.not_recorded(a) for a in ignored)]))
        return Outcome(StepStatus.OK, {"by": first.by, "at": first.at, "note": first.note},
                       message=f"approved by {first.by}")
    evidence = [_evaluate(item, ctx, mine) for item in items]
    lines = [f"[{'✓' if e.satisfied else ' '}] {e.item.id}: {e.item.text} — {e.detail}"
             for e in evidence]
    result: dict[str, Any] = {"items": {e.item.id: e.as_dict() for e in evidence},
              "by": sorted({a.by for a in mine})}
    if ctx.dry_run:
        done = sum(e.satisfied for e in evidence)
        return Outcome(StepStatus.WOULD_RUN, result, message=f"{prompt}: {done} of {len(items)} "
                       "items satisfied now\n" + "\n".join(lines))
    for line in lines:
        ctx.emit(line)
    failed = [e for e in evidence if e.item.kind == "check" and not e.satisfied]
    if failed:
        raise StepFailed("checks not passing: " + "; ".join(
            f"{e.item.id}: {e.detail}" for e in failed), result)
    # The plan approvals this gate passed with: used up by this run when its checkpoint is made.
    result["plan_approvals_used"] = [
        {"plan_hash": a["plan_hash"], "gate": e.data["gate"], "by": a["by"]}
        for e in evidence if e.item.kind == "approval" and e.satisfied
        for a in e.data["approvals"] if a.get("plan_hash")]
    missing = [e for e in evidence if not e.satisfied]
    if missing:
        raise WaitingForApproval(
            ctx.step.id, f"{prompt}: {len(missing)} of {len(items)} items not satisfied "
            f"({', '.join(e.item.id for e in missing)})", result)
    return Outcome(StepStatus.OK, result, message=f"{len(items)} items satisfied")


def _evaluate(item: gates.Item, ctx: StepContext, approvals: list[Any]) -> gates.Evidence:
    inventory = ctx.variables.get("inventory") or {}
    now = ctx.clock.now()
    if item.kind == "attest":
        return gates.attest(item, [a for a in approvals if a.step_id == ctx.step.id],
                            [a for a in ctx.unrecorded if a.step_id == ctx.step.id])
    if item.kind == "approval":
        facts = ctx.gate_inputs
        context = gates.GateContext(
            starter=str(ctx.variables["run"]["user"]), plan_hash=facts.get("plan_hash", ""),
            runbook_sha=facts.get("runbook_sha", ""),
            inventory_sha=facts.get("inventory_sha", ""), params=facts.get("params", {}),
            people=inventory.get("people") or {},
            expiry_hours=float((inventory.get("approvals") or {}).get(
                "expiry_hours", gates.DEFAULT_EXPIRY_HOURS)), now=now, run_id=ctx.run_id,
            bound=facts.get("bound") or {},
            used=ctx.store.plan_approval_uses(facts.get("plan_hash", "")) if ctx.store else {})
        offered = ctx.store.plan_approvals(facts.get("runbook", "")) if ctx.store else []
        # A plan's approvals are counted, as a run's are, only with their journal record.
        unrecorded = ctx.store.unrecorded_approvals([a for a, _ in offered]) \
            if ctx.store and offered else set()
        return gates.gate(item, [a for a in approvals if not a.plan_hash],
                          [(a, p) for a, p in offered if a not in unrecorded], context,
                          [*ctx.unrecorded, *unrecorded])
    if "soak" in item.spec:
        history = ctx.store.history(env=str(item.spec["soak"]["env"]), limit=20) \
            if ctx.store else []
        env = str(item.spec["soak"]["env"])
        running = next((r for r in ctx.spec.get("running") or [] if str(r.get("env")) == env),
                       None)
        return gates.soak(gates.Item(item.id, item.text, item.kind, item.spec["soak"]),
                          history, now, running)
    if "window" in item.spec:
        env = str(item.spec["window"]["env"])
        windows = (inventory.get("maintenance_windows") or {}).get(env, [])
        return gates.window(gates.Item(item.id, item.text, item.kind, item.spec["window"]),
                            windows, now)
    if "notified" in item.spec:
        records = ctx.store.steps(ctx.run_id).values() if ctx.store else ()
        return gates.notified(gates.Item(item.id, item.text, item.kind, item.spec["notified"]),
                              [r.result for r in records if r.status == StepStatus.OK])
    if "analysis" in item.spec:
        return _analysis(item, ctx, inventory)
    return gates.probe(item, _run_command, _fetch)


def _analysis(item: gates.Item, ctx: StepContext, inventory: Mapping[str, Any],
              given: Mapping[str, Any] | None = None) -> gates.Evidence:
    """The environment's monitoring, measured by an analysis template against the
    inventory's Prometheus, of the image the environment runs (as ``running`` says). A plan
    measures nothing: the measurements take the template's count and intervals."""
    from engine.steps import monitoring as analysis

    spec = item.spec["analysis"]
    env = str(spec["env"])
    monitoring = inventory.get("monitoring") or {}
    if not monitoring.get("prometheus"):
        return gates.Evidence(item, False, "the inventory names no Prometheus "
                                           "(monitoring.prometheus): nothing to measure")
    running: Mapping[str, Any] = next(
        (r for r in ctx.spec.get("running") or [] if str(r.get("env")) == env), {})
    args = dict(given) if given is not None else \
        {"env": env, **{k: v for k, v in running.items() if k != "env"}}
    if isinstance(args.get("image"), Mapping):
        return _analysis_of_set(item, ctx, inventory, args)
    if ctx.dry_run:
        return gates.Evidence(item, False, f"analysis {spec['template']} of {env} against "
                                           f"{monitoring['prometheus']}: measured when the run "
                                           "reaches this step", {"args": args})
    try:
        found = analysis.analyse(monitoring, str(spec["template"]), args, inventory,
                                 clock=ctx.clock)
    except InvalidInput as err:  # a query naming what this run did not give (args.image)
        return gates.Evidence(item, False, f"analysis {spec['template']} of {env}: "
                                           f"{err.message}", {"args": args})
    return gates.Evidence(item, found.passed, found.detail, {"analysis": found.data})


def _analysis_of_set(item: gates.Item, ctx: StepContext, inventory: Mapping[str, Any],
                     args: Mapping[str, Any]) -> gates.Evidence:
    """The analysis of a release: of each service that answers HTTP (one the inventory gives
    HTTP checks, ``verify``), with its own image; a service without any (a queue worker) has
    no requests to measure, its rollout verified it. Passes when each passes."""
    env = str(args["env"])
    http = {s["name"] for s in services.of(inventory, env) if s["verify"]}
    found, details, data = [], [], {}
    for name, image in args["image"].items():
        if name not in http:
            details.append(f"{name}: answers no HTTP, not measured")
            continue
        one = {**args, "image": image, "service": name,
               "digest": (args.get("digest") or {}).get(name)}
        evidence = _analysis(item, ctx, inventory, one)
        found.append(evidence.satisfied)
        details.append(f"{name}: {evidence.detail}")
        data[name] = dict(evidence.data)
    return gates.Evidence(item, bool(found) and all(found), "; ".join(details),
                          {"services": data})


def _run_command(argv: list[str], timeout: float) -> tuple[int, str]:
    done = proc.run(argv, timeout=timeout)
    return done.rc, done.stdout + done.stderr


def _fetch(url: str) -> int | str:
    import urllib.error  # here: loading runbooks needs no HTTP client
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError as err:
        return f"unreachable ({err})"


def describe(spec: Mapping[str, Any]) -> list[str]:
    return [f"stops until approved: {spec['prompt']}"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["prompt"],
    "properties": {
        "prompt": {"$ref": "#/$defs/template"},
        "items": {
            "description": (
                "checklist items, each satisfied on its own: a list, or a template giving one"
            ),
            "oneOf": [
                {"$ref": "#/$defs/template"},
                {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"type": "string"},
                            {
                                "$ref": (
                                    "inventory.schema.json#/properties/checklists/"
                                    "additionalProperties/items"
                                ),
                            },
                        ],
                    },
                },
            ],
        },
        "running": {
            "description": (
                "what environments run now, as earlier steps read it: a soak check of one of "
                "these environments holds only if the promotion it counts from is of this image "
                "(and digest)"
            ),
            "oneOf": [
                {"$ref": "#/$defs/template"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["env", "image"],
                        "properties": {
                            "env": {"$ref": "#/$defs/template"},
                            "image": {"$ref": "#/$defs/template"},
                            "digest": {"$ref": "#/$defs/template"},
                        },
                    },
                },
            ],
        },
    },
}

TYPE = StepType("approval", run, describe, SCHEMA, gate=True,
                needs=frozenset({STORE, APPROVALS}))
