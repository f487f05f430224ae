"""Delivering a message through Apprise, in whichever process has Apprise loaded: the
engine's own, or a child of the warm Ansible worker, which loads it once for every run
(``engine/steps/ansible/host.py`` loads this file by its path). Apprise imports every one of its
plugins before its first message, about a second of CPU: a run that has a warm worker never
pays it in the engine.

It imports nothing of the engine, and Apprise only when called.
"""

from __future__ import annotations

import importlib
import os

# The longest one delivery may take, retries included (Apprise's own connect and read
# timeouts are 4 s each); a service that is down is a warning, not a stuck release.
TIMEOUT = 30.0


def parts() -> list[str]:
    """Apprise's modules, in an order that loads each after what it imports: loaded one at a
    time, none takes long (a warm worker forks a playbook only between two of them)."""
    import importlib.util

    spec = importlib.util.find_spec("apprise")
    if spec is None or not spec.submodule_search_locations:
        return []
    plugins = os.path.join(spec.submodule_search_locations[0], "plugins")
    found = ["markdown", "requests", "apprise"]
    found += sorted(f"apprise.plugins.{name.removesuffix('.py')}"
                    for name in os.listdir(plugins)
                    if not name.startswith(("_", "base")) and
                    (name.endswith(".py") or os.path.isdir(os.path.join(plugins, name))))
    return found


def load(module: str | None = None) -> None:
    """Import ``module`` (one of ``parts``), or all of Apprise with its plugins registered."""
    if module is not None:
        importlib.import_module(module)
        return
    known("json://localhost/")


def known(url: str) -> bool:
    """Whether ``url`` is one Apprise can use."""
    import apprise

    return bool(apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory")).add(url))


def send(url: str, title: str, body: str, kind: str) -> tuple[str, str]:
    """Deliver one message to one Apprise URL: the service's name and what went wrong ('' if
    it was delivered)."""
    import apprise

    asset = apprise.AppriseAsset(app_id="runbook", app_desc="runbook",
                                 storage_mode="memory")  # nothing written under $HOME
    sender = apprise.Apprise(asset=asset)
    if not sender.add(url):
        return "", "its URL is not one Apprise can use"
    result = sender.notify(body=body, title=title, notify_type=apprise.NotifyType(kind),
                           timeout=TIMEOUT)
    service = ", ".join(r.name for r in result)
    if result:
        return service, ""
    said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
    return service, "; ".join(dict.fromkeys(said)) or f"Apprise answered {result.status.name}"


def send_all(messages: list[list[str]]) -> list[list[str]]:
    """``send`` for each ``[url, title, body, kind]``, all at once (one thread each): for
    each, in order, ``[service, problem]``."""
    from concurrent.futures import ThreadPoolExecutor

    if len(messages) <= 1:
        return [list(send(*m)) for m in messages]
    with ThreadPoolExecutor(max_workers=len(messages), thread_name_prefix="apprise") as pool:
        return [list(done) for done in pool.map(lambda m: send(*m), messages)]
