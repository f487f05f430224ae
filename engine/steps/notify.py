"""``notify``: tell an audience (stakeholders, on-call) what a run is doing, through Apprise.

The inventory names each audience's URLs by the environment variables that hold them
(``notify: {oncall: [{env: ONCALL_URL}]}``): a URL carries its service's token, so it never
sits in a file, and it is a secret of every run of that inventory (``secret_values``). What
the step records is who was told, when, the title and whether it was delivered, never
where. A message that cannot be delivered is a warning on a step that succeeds: a release
never fails because a chat service is down.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.clock import iso
from engine.errors import InvalidInput
from engine.language.model import Inventory, Outcome, Step
from engine.status import StepStatus
from engine.steps.ansible import apprise_send, warm
from engine.steps.base import StepType
from engine.trust.secrets import MIN_SECRET_LENGTH

if TYPE_CHECKING:
    from engine.steps.base import StepContext

KINDS = ("info", "success", "warning", "failure")  # Apprise's notification types
TIMEOUT = apprise_send.TIMEOUT


@dataclass(frozen=True)
class Target:
    audience: str
    env: str  # the variable holding the URL
    url: str | None  # None: the variable is not set
    index: int  # its place in the audience's list, for the line that names it


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    audiences = audiences_of(spec["to"])
    title, body = str(spec["title"]), str(spec["body"])
    if ctx.dry_run:
        return Outcome(StepStatus.WOULD_RUN, message=f"notifies {', '.join(audiences)}: {title}")
    config = (ctx.variables.get("inventory") or {}).get("notify") or {}
    kind = str(spec.get("type", "info"))
    deliveries = _deliver([(audience, t) for audience in audiences
                           for t in _or_none(targets(config, [audience], os.environ))],
                          title, body, kind, ctx)
    result: dict[str, Any] = {"notification": True, "title": title, "type": kind,
                              "delivered": all(d["delivered"] for d in deliveries),
                              "deliveries": deliveries}
    told = sorted({d["audience"] for d in deliveries if d["delivered"]})
    missed = [f"{d['audience']} ({d['problem']})" for d in deliveries if not d["delivered"]]
    message = f"delivered to {', '.join(told)}" if told else ""
    if missed:
        message = "warning: not delivered to " + "; ".join(missed) + \
            (f"; {message}" if message else "")
    return Outcome(StepStatus.OK, result, message=ctx.redact(message))


def _deliver(found: Sequence[tuple[str, Target | None]], title: str, body: str, kind: str,
             ctx: StepContext) -> list[dict[str, Any]]:
    """One entry per audience's target, in order; the messages that can go go together."""
    entries: list[dict[str, Any]] = []
    urls: list[tuple[dict[str, Any], str]] = []
    for audience, target in found:
        entry: dict[str, Any] = {"audience": audience, "service": "",
                                 "at": iso(ctx.clock.now()), "delivered": False, "problem": ""}
        entries.append(entry)
        if target is None:
            entry["problem"] = "the inventory names no URL for it"
        elif target.url is None:
            entry["problem"] = f"the environment variable {target.env} is not set"
        else:
            urls.append((entry, target.url))
    if urls:
        answers = send_all([url for _, url in urls], title, body, kind)
        for (entry, _), (service, problem) in zip(urls, answers, strict=True):
            entry.update(service=service, delivered=not problem, problem=ctx.redact(problem),
                         at=iso(ctx.clock.now()))
    return entries


def _or_none(found: list[Target]) -> list[Target | None]:
    """An audience the inventory names no URL for is still an undelivered message."""
    return list(found) or [None]


def send_all(urls: Sequence[str], title: str, body: str,
             kind: str) -> list[tuple[str, str]]:
    """Deliver one message to each Apprise URL, all at once: for each, the service's name
    and what went wrong ('' if it was delivered). Through the run's warm worker when it has
    one (it has Apprise loaded), else here."""
    messages = [[url, title, body, kind] for url in urls]
    try:
        answer = _in_worker("apprise.send_all", messages)
    except TimeoutError as exc:
        # They may have been delivered: sending them again could tell them twice.
        return [("", f"no answer from the sender within {TIMEOUT + 10:g} s ({exc})")
                for _ in urls]
    if (isinstance(answer, list) and len(answer) == len(urls)
            and all(isinstance(a, list) and len(a) == 2 for a in answer)):
        return [(str(service), str(problem)) for service, problem in answer]
    return [(service, problem) for service, problem in apprise_send.send_all(messages)]


def _in_worker(name: str, *args: Any) -> Any:
    """``name`` run by the run's warm worker; None when the run has none (or its child ended
    without an answer: then here, as without one). TimeoutError when the call did not end in
    its time: what it did is not known."""
    worker = warm.current()
    if worker is None:
        return None
    try:
        return worker.call(name, args, step_id="", timeout=TIMEOUT + 10)
    except warm.CallTimedOut as exc:
        raise TimeoutError(str(exc)) from None
    except warm.WorkerDied:
        return None


def audiences_of(value: Any) -> list[str]:
    """The rendered ``to``: one audience's name or a list of them."""
    names = [value] if isinstance(value, str) else list(value or ())
    return [str(n) for n in names if str(n)]


def targets(config: Mapping[str, Any], audiences: Sequence[str],
            environ: Mapping[str, str]) -> list[Target]:
    """Where each audience is told: the URLs the inventory's variables hold now."""
    return [Target(audience, str(entry["env"]), environ.get(str(entry["env"])) or None, i)
            for audience in audiences
            for i, entry in enumerate(config.get(audience) or ())]


def check(spec: Mapping[str, Any], inventory: Inventory) -> None:
    """Before a run is recorded: each audience it tells is in the inventory and each URL's
    variable is set and holds a URL Apprise knows, else InvalidInput naming the inventory's
    line."""
    config = inventory.notify
    where = str(inventory.path) if inventory.path else "the inventory"
    for audience in audiences_of(spec.get("to")):
        if audience not in config:
            known = ", ".join(config) or "none"
            raise InvalidInput(f"no notify audience {audience!r} (audiences: {known})",
                               file=where, line=inventory.line_of(("notify",)),
                               path="$.notify")
    for target in targets(config, audiences_of(spec.get("to")), os.environ):
        at = ("notify", target.audience, target.index, "env")
        if target.url is None:
            raise InvalidInput(f"the environment variable {target.env} is not set: it holds "
                               f"the URL that tells {target.audience}", file=where,
                               line=inventory.line_of(at), path="$." + ".".join(map(str, at)))
        if "://" not in target.url or not _known(target.url):
            raise InvalidInput(f"{target.env} does not hold a notification URL Apprise knows "
                               "(such as slack://…, msteams://…, mailto://…, json://…)",
                               file=where, line=inventory.line_of(at),
                               path="$." + ".".join(map(str, at)))


def prepare(run_id: str, steps: Sequence[tuple[Step, Path]]) -> None:
    """Load Apprise and its plugins (about a second) in the background while the steps before
    the run's first message run, which mostly wait on Ansible and the cluster; nothing when
    the run has a warm worker: it loads Apprise and delivers the messages."""
    if warm.current() is not None:
        return
    if "apprise" not in sys.modules:
        threading.Thread(target=_load, name="load-apprise", daemon=True).start()


def _load() -> None:
    with contextlib.suppress(Exception):  # a failure shows when a message is sent
        apprise_send.load()


@functools.cache
def _known(url: str) -> bool:
    """Whether Apprise can use ``url`` (asked once per URL: a run's message steps share
    their audiences)."""
    try:
        answer = _in_worker("apprise.known", url)
    except TimeoutError:
        answer = None  # a check only: asked again here
    return answer if isinstance(answer, bool) else apprise_send.known(url)


def secret_values(inventory: Mapping[str, Any]) -> list[str]:
    """What of the URLs the inventory's variables hold is masked: each whole, without its
    scheme, and the parts that carry a token (password, path, query)."""
    config = inventory.get("notify") or {}
    found: list[str] = []
    for target in targets(config, list(config), os.environ):
        if target.url is None:
            continue
        parts = urllib.parse.urlsplit(target.url)
        found += [target.url, target.url.split("://", 1)[-1], parts.password or "",
                  parts.path.strip("/"), parts.query]
    return [s for s in found if len(s) >= MIN_SECRET_LENGTH]


def describe(spec: Mapping[str, Any]) -> list[str]:
    to = spec["to"] if isinstance(spec["to"], str) else ", ".join(map(str, spec["to"]))
    return [f"notifies {to}: {spec['title']}"]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "title", "body"],
    "properties": {
        "to": {
            "description": "the audiences told: names under the inventory's `notify`",
            "oneOf": [
                {"$ref": "#/$defs/template"},
                {"type": "array", "minItems": 1,
                 "items": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"}},
            ],
        },
        "title": {"$ref": "#/$defs/template"},
        "body": {"$ref": "#/$defs/template"},
        "type": {"description": "how services show it (Apprise's notification type)",
                 "enum": list(KINDS)},
    },
}

TYPE = StepType("notify", run, describe, SCHEMA,
                summary="send a message to the inventory's audiences (Apprise URLs)",
                check=check, secrets=secret_values, informs=True, prepare=prepare)
