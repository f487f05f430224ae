"""Action plugin: read a deployment and, with ``wait``, wait until its rollout is complete.

What ``kubernetes.core.k8s_info`` does for one deployment (the same ``resources`` result),
without a module process. The wait watches the deployment (a GET, then a watch from its
resourceVersion, filtered to its name), so it ends as soon as the rollout does; a server that
refuses to watch is polled every ``wait_sleep`` seconds instead. A rollout is complete when
the controller has seen the latest spec and every replica is updated and available.

Options: namespace, name (required); kubeconfig, context; wait (default false), wait_timeout
(seconds, default 120), wait_sleep (seconds between polls, default 1). Returns resources (the
deployment as the API gives it, or nothing when there is none), complete, rollout (what a
playbook checks of it, small enough to template at once: images by container, revision,
replicas, updated, available, generation, observed), and wait_method (watch or poll) after a
wait.

With ``container``, the deployment must exist and have that container, and the result also
says what it runs: image, repository and tag (its name and its tag, '' when it has none; a
digest is neither), revision, replicas (available); with ``image`` as well, the container must
run that image (after the wait, when there is one) and every replica must be updated and
available.

``name`` (with ``container`` and ``image``) may map service names to one deployment each:
each is read, and with ``wait`` each that is given an ``image`` is waited for (one deadline for
all), the others only read; the results map the service names to theirs (resources lists every
deployment). A rollout that does not complete fails the task naming its service, with what
each of the others runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    Kube,
    RunbookAction,
    kube_api,
    named,
    per_service,
    services_of,
)

# What a server that cannot watch answers a watch request with.
NO_WATCH = frozenset({400, 403, 404, 405, 406, 501})


def complete(dep: dict[str, Any]) -> bool:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = spec.get("replicas", 1)
    return bool(status.get("observedGeneration") == dep["metadata"].get("generation")
            and (status.get("replicas") or 0) == want
            and (status.get("updatedReplicas") or 0) == want
            and (status.get("availableReplicas") or 0) == want
            and not status.get("unavailableReplicas"))


def _get(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = kube.deployment(ns, name)
        return found
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _changes(kube: Kube, ns: str, name: str, version: str,
             seconds: float) -> Iterator[dict[str, Any]]:
    """The deployment each time it changes after ``version``, for about ``seconds``; ends
    early when the watch does (the server's timeout, an expired version)."""
    from kubernetes.watch.watch import iter_resp_lines

    resp = kube.watch_deployments(
        ns, f"metadata.name={name}", version, max(1, math.ceil(seconds)),
        seconds + 10)  # a server that forgets its timeout cannot hang us
    try:
        for line in iter_resp_lines(resp):
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                yield event["object"]
            elif event.get("type") in ("DELETED", "ERROR"):
                return  # gone, or an expired version: the caller reads it again
    finally:  # a watch left early is closed, not handed back to the pool half read
        resp.close()
        resp.release_conn()


def wait(kube: Kube, ns: str, name: str, dep: dict[str, Any], timeout: float,
         sleep: float) -> tuple[dict[str, Any], bool, str]:
    """(the deployment as last seen, whether its rollout completed, how it was waited for)"""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    deadline = time.monotonic() + timeout
    method = "watch"
    while not complete(dep):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if method == "watch":
            try:
                for seen in _changes(kube, ns, name, dep["metadata"]["resourceVersion"], left):
                    dep = seen
                    if complete(dep) or time.monotonic() >= deadline:
                        break
                else:
                    dep = _get(kube, ns, name) or dep
                continue
            except ApiException as err:
                if err.status not in NO_WATCH:
                    raise
                method = "poll"
            except HTTPError:  # a broken stream: read it again and watch from there
                dep = _get(kube, ns, name) or dep
                continue
        time.sleep(min(sleep, max(0.0, deadline - time.monotonic())))
        dep = _get(kube, ns, name) or dep
    return dep, complete(dep), method


def rollout(dep: dict[str, Any]) -> dict[str, Any]:
    """What playbooks check of a deployment: the whole object is large (managed fields,
    conditions), and ansible-core copies what it templates."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    meta = dep.get("metadata") or {}
    return {"images": {c.get("name"): c.get("image") for c in containers},
            "revision": (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
            "replicas": spec.get("replicas", 1), "updated": status.get("updatedReplicas", 0),
            "available": status.get("availableReplicas", 0),
            "generation": meta.get("generation"), "observed": status.get("observedGeneration")}


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "namespace": {"type": "str", "required": True},
        "name": {"type": "raw", "required": True},
        "wait": {"type": "bool", "default": False},
        "wait_timeout": {"type": "int", "default": 120},
        "wait_sleep": {"type": "float", "default": 1},
        "container": {"type": "raw"},
        "image": {"type": "raw"},
    }
    RULES: ClassVar[dict[str, Any]] = {
        "required_by": {"image": ["container"]},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        kube = kube_api(p["kubeconfig"], p["context"])
        runs = services_of(p, "name", ("name", "container", "image"))
        if len(runs) == 1 and runs[0][0] is None:
            return self._one(kube, runs[0][1], p["wait_timeout"])
        deadline = time.monotonic() + p["wait_timeout"]
        done: list[tuple[str | None, dict[str, Any]]] = []
        for service, mine in runs:
            mine["wait"] = mine["wait"] and mine["image"] is not None
            try:
                left = max(0.0, deadline - time.monotonic())
                done.append((service, self._one(kube, mine, left, p["wait_timeout"])))
            except Failed as err:
                others = [f"{other} {_state(res)}" for other, res in done]
                rest = [str(other) for other, _ in runs[len(done) + 1:]]
                raise Failed(named(service, err.msg)
                             + (f" ({'; '.join(others)})" if others else "")
                             + (f"; not read yet: {', '.join(rest)}" if rest else ""),
                             services={n: _state(r) for n, r in done}) from None
        out: dict[str, Any] = {
            "resources": [d for _, res in done for d in res["resources"]],
            "complete": all(res["complete"] for _, res in done),
            "rollout": per_service([(n, res["rollout"]) for n, res in done])}
        if p["container"] is not None:
            for key in ("image", "repository", "tag", "revision", "replicas"):
                out[key] = per_service([(n, res[key]) for n, res in done])
        return out

    def _one(self, kube: Kube, p: dict[str, Any], timeout: float,
             told: float | None = None) -> dict[str, Any]:
        told = timeout if told is None else told
        dep = _get(kube, p["namespace"], p["name"])
        if dep is None:
            if p["container"] is not None:
                raise Failed(f"deployment {p['name']} not found in namespace "
                             f"{p['namespace']}", resources=[], complete=False,
                             rollout={})
            return {"resources": [], "complete": False, "rollout": {}}
        if not p["wait"]:
            return _running({"resources": [dep], "complete": complete(dep),
                             "rollout": rollout(dep)}, p)
        dep, done, method = wait(kube, p["namespace"], p["name"], dep, timeout,
                                 p["wait_sleep"])
        result: dict[str, Any] = {"resources": [dep], "complete": done, "rollout": rollout(dep),
                                  "wait_method": method}
        if not done:
            raise Failed(f"the rollout of {p['name']} did not complete within "
                         f"{told:g} s: {_progress(result['rollout'])}",
                         **result)
        return _running(result, p)


def _state(result: dict[str, Any]) -> str:
    """What one service's deployment runs, for a message about another's."""
    seen = result.get("rollout") or {}
    image = result.get("image") or ", ".join(str(i) for i in (seen.get("images") or {}).values())
    return (f"runs {image}, revision {seen.get('revision')}"
            + ("" if result.get("complete") else f" ({_progress(seen)})"))


def _running(result: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """The result with what ``container`` runs, checked against ``image``."""
    if p["container"] is None:
        return result
    seen = result["rollout"]
    running = seen["images"].get(p["container"])
    if running is None:
        raise Failed(f"deployment {p['name']} has no container {p['container']} "
                     f"(containers: {', '.join(seen['images'])})", **result)
    expected = p["image"]
    if expected is not None and (running != expected or not result["complete"]):
        raise Failed(f"{p['name']} runs {running}, expected {expected}"
                     + ("" if result["complete"] else f" ({_progress(seen)})"),
                     **result)
    repository, tag = split_image(running)
    return {**result, "image": running, "repository": repository, "tag": tag,
            "revision": seen["revision"], "replicas": seen["available"]}


def _progress(seen: dict[str, Any]) -> str:
    """How far a rollout got, from ``rollout``'s figures."""
    return (f"{seen['available'] or 0}/{seen['replicas']} replicas available, "
            f"{seen['updated'] or 0} updated")


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference ``name[:tag][@digest]``: the tag is '' when it
    has none (a colon before the last slash is a registry's port, not a tag)."""
    name = image.partition("@")[0]
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, ""
    return repository, tag
