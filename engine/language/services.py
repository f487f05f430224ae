"""The services an environment runs: what a release is made of.

An inventory may list its services (``services``: name → ECR repository, deployment and
container, the environments it runs in and what differs there). The deployment and container
names are patterns: ``{env}`` and ``{service}`` stand for the environment's and the service's
names (``service_defaults``, else the service's own, else ``{service}``), so the usual
``ENV-quikapp-NAME`` deployments need no line per environment. An inventory without the list
runs one service, as every inventory did before releases had several: the environment's own
deployment and container, the image ``vars.repository``; it is named after the repository's
last part (``quikapp/api`` → ``api``).

Patterns are data: the two names are put in their places and nothing else is read from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.errors import InvalidInput

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
KNOWN = frozenset({"env", "service"})
DEFAULTS = {"deployment": "{service}", "container": "{service}"}


def listed(inventory: Mapping[str, Any]) -> bool:
    """Whether the inventory lists its services (a release of several images)."""
    return bool(inventory.get("services"))


def names(inventory: Mapping[str, Any]) -> list[str]:
    """Every service's name, in the inventory's order."""
    if listed(inventory):
        return [str(name) for name in inventory["services"]]
    return [_single_name(inventory)]


def of(inventory: Mapping[str, Any], env: str, only: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The services ``env`` runs (those of ``only`` when it names any), each as
    ``{name, repository, image, deployment, container, verify, listed}``: ``image`` is the
    repository in the registry (``vars.registry/REPOSITORY``), ``verify`` its HTTP checks,
    ``listed`` whether the inventory lists its services (its values per service are then
    mappings by name, however few services a run names)."""
    settings = (inventory.get("environments") or {}).get(env)
    if settings is None:
        return []
    wanted = list(only)
    found = [s for s in _all(inventory, env, settings) if not wanted or s["name"] in wanted]
    return sorted(found, key=lambda s: wanted.index(s["name"])) if wanted else found


def unknown(inventory: Mapping[str, Any], given: Iterable[str]) -> list[str]:
    """The names of ``given`` that are not services of the inventory."""
    known = names(inventory)
    return [str(name) for name in given if name not in known]


def _single_name(inventory: Mapping[str, Any]) -> str:
    repository = str((inventory.get("vars") or {}).get("repository") or "app")
    return repository.rstrip("/").rsplit("/", 1)[-1] or "app"


def _image(inventory: Mapping[str, Any], repository: str) -> str:
    registry = str((inventory.get("vars") or {}).get("registry") or "")
    return f"{registry}/{repository}" if registry else repository


def _all(inventory: Mapping[str, Any], env: str,
         settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not listed(inventory):
        repository = str((inventory.get("vars") or {}).get("repository") or "")
        return [{"name": _single_name(inventory), "repository": repository,
                 "image": _image(inventory, repository),
                 "deployment": str(settings.get("deployment", "")),
                 "container": str(settings.get("container", "")),
                 "verify": list(settings.get("verify") or []), "listed": False}]
    defaults = {**DEFAULTS, **(inventory.get("service_defaults") or {})}
    found = []
    for name, spec in inventory["services"].items():
        runs_in = spec.get("environments")
        if runs_in is not None and env not in runs_in:
            continue
        here = {**defaults, **spec, **((runs_in or {}).get(env) or {})}
        values = {"env": env, "service": str(name)}
        found.append({"name": str(name), "repository": str(spec["repository"]),
                      "image": _image(inventory, str(spec["repository"])),
                      "deployment": fill(str(here["deployment"]), values),
                      "container": fill(str(here["container"]), values),
                      "verify": [{**check, "url": fill(str(check["url"]), values)}
                                 for check in here.get("verify") or []], "listed": True})
    return found


def fill(pattern: str, values: Mapping[str, str]) -> str:
    """``pattern`` with each ``{env}`` and ``{service}`` replaced by its value."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), pattern)


def problems(inventory: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Where the services' patterns name something other than ``{env}`` or ``{service}``,
    and environments a service names that the inventory does not have."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    envs = inventory.get("environments") or {}
    for key, pattern in (inventory.get("service_defaults") or {}).items():
        found += _pattern_problems(("service_defaults", key), str(pattern))
    for name, spec in (inventory.get("services") or {}).items():
        for key in ("deployment", "container"):
            if key in spec:
                found += _pattern_problems(("services", name, key), str(spec[key]))
        for i, check in enumerate(spec.get("verify") or []):
            found += _pattern_problems(("services", name, "verify", i, "url"), str(check["url"]))
        for env, differs in (spec.get("environments") or {}).items():
            if env not in envs:
                found.append((("services", name, "environments", env),
                               f"service {name} runs in {env}, which is not one of the "
                               f"environments ({', '.join(envs)})"))
            for key in ("deployment", "container"):
                if key in (differs or {}):
                    found += _pattern_problems(("services", name, "environments", env, key),
                                               str(differs[key]))
    return found


def _pattern_problems(where: tuple[str | int, ...],
                      pattern: str) -> list[tuple[tuple[str | int, ...], str]]:
    bad = [m.group(0) for m in PLACEHOLDER.finditer(pattern) if m.group(1) not in KNOWN]
    stray = PLACEHOLDER.sub("", pattern)
    if bad:
        return [(where, f"{pattern!r} names {', '.join(bad)}: a pattern knows only "
                        "{env} and {service}")]
    if "{" in stray or "}" in stray:
        return [(where, f"{pattern!r} has an unmatched brace: a pattern knows only "
                        "{env} and {service}")]
    return []


def check(inventory: Mapping[str, Any], file: str,
          line_of: Any) -> None:
    """Refuse the inventory at the first problem of its services (``problems``)."""
    for where, message in problems(inventory):
        raise InvalidInput(message, file=file, line=line_of(where),
                           path="$." + ".".join(str(k) for k in where))


def by_name(services: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(s["name"]): s for s in services}


# Per-service values. A value a release has for each service (a tag, a digest, the image a
# deployment runs) is a mapping by service name; of an inventory without a services list (one
# service), the value itself: every runbook, playbook and record of such an inventory reads as
# it always did.

def per_service(found: Sequence[Mapping[str, Any]], key: str) -> Any:
    """Each service's ``key``: a mapping by name, or of an inventory of one service (not
    listed) the value itself."""
    if len(found) == 1 and not found[0].get("listed", True):
        return found[0][key]
    return {str(s["name"]): s[key] for s in found}


def for_each(value: Any, found: Sequence[Mapping[str, Any]]) -> Any:
    """``value`` as a value per service of ``found``: the same for each (a mapping stays as
    it is)."""
    if isinstance(value, Mapping) or (len(found) == 1 and not found[0].get("listed", True)):
        return value
    return {str(s["name"]): value for s in found}


def retag(tags: Any, source: str, target: str) -> Any:
    """The tag each image gets in ``target``: ``TARGET-`` and the source tag without its
    ``SOURCE-`` (uat1-1.4.2 → staging-1.4.2)."""
    def one(tag: Any) -> str:
        text = str(tag)
        return f"{target}-{text.removeprefix(f'{source}-')}"
    return {k: one(v) for k, v in tags.items()} if isinstance(tags, Mapping) else one(tags)


def tagged(images: Any, tags: Any) -> Any:
    """Each image name with its tag (NAME:TAG)."""
    if isinstance(tags, Mapping) and not isinstance(images, Mapping):
        return {k: f"{images}:{v}" for k, v in tags.items()}
    if isinstance(images, Mapping):
        return {k: f"{v}:{_at(tags, k)}" for k, v in images.items()}
    return f"{images}:{tags}"


def differing(one: Any, other: Any, names: Sequence[str] = ("",)) -> list[str]:
    """The services whose two values differ (a one-service value: ``names`` when it does)."""
    if isinstance(one, Mapping):
        return [str(k) for k, v in one.items() if _at(other, k) != v]
    return list(names) if one != other else []


def only(value: Any, wanted: Iterable[str]) -> Any:
    """The values of the services named (a one-service value stays as it is)."""
    if not isinstance(value, Mapping):
        return value
    keep = set(wanted)
    return {k: v for k, v in value.items() if k in keep}


def _at(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else value


def tag_of(images: Any) -> Any:
    """Each image reference's tag (NAME:TAG → TAG; '' when it has none)."""
    def one(image: Any) -> str:
        name = str(image).partition("@")[0]
        _, colon, tag = name.rpartition(":")
        return tag if colon and "/" not in tag else ""
    return {k: one(v) for k, v in images.items()} if isinstance(images, Mapping) else one(images)
