"""Drift: whether an environment's overlay, its cluster and the engine's history agree on the
image it runs.

Of a release of several services, each service's image is compared (the values are mappings
by service name; one service's are the images themselves). Three records of one fact can
part: a change made on the cluster alone (``kubectl set
image``, an undo by hand) leaves the overlay behind, and the next ``kubectl apply -k`` quietly
changes what runs; a change the history does not know of makes soak evidence vouch for an
image that is not running. Runbooks that change what an environment runs look here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.language import services as services_mod
from engine.store import HistoryRecord, StateStore
from engine.trust.gates import CHANGE_KINDS

RENDER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Drift:
    """What each of the three says an environment runs, and how they disagree."""

    env: str
    overlay: Any  # an image, or of several services a mapping by name (None: not read)
    cluster: Any
    history: Mapping[str, Any] | None  # the last change recorded: kind, at, run_id, image, digest
    problems: tuple[str, ...] = field(default_factory=tuple)
    checked: bool = True  # False: the overlay and the cluster were not read (board --no-cluster)

    @property
    def agrees(self) -> bool:
        return not self.problems

    @property
    def agreement(self) -> bool | None:
        """Whether the three agree; None when the overlay and the cluster were not read."""
        return self.agrees if self.checked else None

    @property
    def mark(self) -> str:
        """What a board shows for it: ok, DRIFT, or not checked."""
        return "not checked" if not self.checked else "ok" if self.agrees else "DRIFT"

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "agrees": self.agreement,
                "checked": self.checked, "overlay": self.overlay, "cluster": self.cluster,
                "history": dict(self.history) if self.history else None,
                "problems": list(self.problems)}


def compare(env: str, overlay: str | None, cluster: str | None,
            last: HistoryRecord | None, unreadable: Mapping[str, str], *,
            checked: bool = True) -> Drift:
    """The disagreements between the overlay, the cluster and the last recorded change;
    ``checked=False``: neither was read, only the history is known.

    The cluster is what runs, so each of the others is compared with it. No recorded change
    is not drift: the history starts with the first run that changes the environment."""
    problems = [f"{env}: cannot read the {what}: {why}" for what, why in unreadable.items()]
    for name, rendered, runs in _each(overlay, cluster):
        if rendered is not None and runs is not None and rendered != runs:
            problems.append(f"{_where(env, name)}: the overlay renders {rendered}, the "
                            f"cluster runs {runs}")
    recorded = _history(last)
    if recorded and cluster is not None:
        for name, image, runs in _recorded(recorded, last, cluster):
            if image != runs:
                problems.append(f"{_where(env, name)}: the last recorded change "
                                f"({recorded['kind']} at {recorded['at']}, run "
                                f"{recorded['run_id']}) is to "
                                f"{image or 'an image not recorded'}, the cluster runs {runs}")
    return Drift(env, overlay, cluster, recorded, tuple(problems), checked)


def _where(env: str, service: str | None) -> str:
    return f"{env} {service}" if service else env


def _each(overlay: Any, cluster: Any) -> list[tuple[str | None, Any, Any]]:
    """(service, overlay's image, cluster's image) of each service: one unnamed for a
    one-service value."""
    if isinstance(overlay, Mapping) or isinstance(cluster, Mapping):
        names = list(dict.fromkeys([*(overlay or {}), *(cluster or {})]))
        return [(n, (overlay or {}).get(n), (cluster or {}).get(n)) for n in names]
    return [(None, overlay, cluster)]


def _recorded(recorded: Mapping[str, Any], last: HistoryRecord | None,
              cluster: Any) -> list[tuple[str | None, Any, Any]]:
    """(service, image the last recorded change set, what the cluster runs) of each service
    that change recorded: a release records a mapping by service, a change of one service of
    several the image with its name in ``services``."""
    image = recorded["image"]
    if not isinstance(cluster, Mapping):
        return [(None, image, cluster)]
    if isinstance(image, Mapping):
        return [(n, v, cluster.get(n)) for n, v in image.items() if n in cluster]
    named = (last.data.get("services") if last else None) or []
    found: list[tuple[str | None, Any, Any]] = [(str(n), image, cluster.get(str(n)))
                                                for n in named if str(n) in cluster]
    return found[:1]


def _history(last: HistoryRecord | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {"kind": last.kind, "at": last.at, "run_id": last.run_id,
            "image": last.data.get("image"), "digest": last.data.get("digest")}


def last_change(store: StateStore, env: str) -> HistoryRecord | None:
    """The newest recorded change of the image ``env`` runs."""
    return next((h for h in store.history(env=env, limit=50) if h.kind in CHANGE_KINDS), None)


def _kubectl(argv: list[str], env: Mapping[str, str] | None) -> subprocess.Popen[str]:
    return subprocess.Popen(["kubectl", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env)


def _home_for_kubectl(scratch: Path) -> dict[str, str] | None:
    """kubectl refuses to start when $HOME is a file, or a path through one (it looks for
    ~/.kube/config before it reads any other kubeconfig): it gets an empty folder then."""
    try:
        os.stat(os.path.join(os.environ.get("HOME", ""), ".kube", "config"))
    except NotADirectoryError:
        return {**os.environ, "HOME": str(scratch)}
    except OSError:
        pass
    return None


def _output(started: subprocess.Popen[str], what: str) -> str:
    """What a started kubectl printed; ``LookupError`` with its last line if it failed."""
    try:
        out, err = started.communicate(timeout=RENDER_TIMEOUT)
    except subprocess.TimeoutExpired:
        started.kill()
        started.communicate()
        raise LookupError(f"{what}: no answer within {RENDER_TIMEOUT:.0f} s") from None
    if started.returncode != 0:
        raise LookupError(f"{what} failed: {(err.strip().splitlines() or ['no output'])[-1]}")
    return out


def overlay_image(rendered: str, overlay: str, deployment: str, container: str) -> str:
    """The image the overlay renders for the container (what the deploy applies)."""
    for doc in yaml.safe_load_all(rendered):
        if isinstance(doc, dict) and doc.get("kind") == "Deployment" and \
                doc.get("metadata", {}).get("name") == deployment:
            return _container_image(doc["spec"]["template"]["spec"]["containers"], container)
    raise LookupError(f"{overlay} renders no deployment {deployment}")


def _container_image(containers: Iterable[Any], name: str) -> str:
    for c in containers:
        if (c.get("name") if isinstance(c, Mapping) else c.name) == name:
            return str(c.get("image") if isinstance(c, Mapping) else c.image)
    raise LookupError(f"no container {name}")


def _read_cluster(env: Mapping[str, Any], kubeconfig: str,
                  environ: Mapping[str, str] | None) -> subprocess.Popen[str]:
    """A GET of the environment's deployment through ``kubectl get --raw`` (the kubeconfig,
    its context and credentials as for any kubectl command; no discovery round trips)."""
    path = f"/apis/apps/v1/namespaces/{urllib.parse.quote(str(env['namespace']), safe='')}" \
        "/deployments"
    if len(env["services"]) == 1:  # one GET of the deployment, else the namespace's list
        path += f"/{urllib.parse.quote(str(env['services'][0]['deployment']), safe='')}"
    options = [*(["--kubeconfig", kubeconfig] if kubeconfig else []),
               *(["--context", str(env["context"])] if env.get("context") else [])]
    return _kubectl([*options, "--request-timeout", f"{RENDER_TIMEOUT:.0f}s", "get", "--raw",
                     path], environ)


def check(environments: Mapping[str, Any], envs: Iterable[str],
          store: StateStore, kubeconfig: str) -> list[Drift]:
    """The drift of each of ``envs``, in the order given. Every overlay is rendered
    (``kubectl kustomize``, as the deploy renders it) and every deployment read at once."""
    with Reads(environments, envs, kubeconfig) as reads:
        return reads.check(store)


def check_recorded(environments: Mapping[str, Any], envs: Iterable[str],
                   last: Mapping[str, HistoryRecord], kubeconfig: str) -> list[Drift]:
    """As ``check``, with each environment's last recorded change read by the caller (the
    board reads those of every environment in one query)."""
    return [compare(name, overlay, cluster, last.get(name), unreadable)
            for name, overlay, cluster, unreadable in read_images(environments, envs,
                                                                   kubeconfig)]


def read_images(environments: Mapping[str, Any], envs: Iterable[str],
                kubeconfig: str) -> list[tuple[str, Any, Any, dict[str, str]]]:
    """What each overlay renders and each cluster runs (with why one could not be read),
    every kubectl started before any is waited for."""
    with Reads(environments, envs, kubeconfig) as reads:
        return reads.images()


class Reads:
    """The kubectl commands that read what ``envs`` run, started at once: the caller does
    its own work while they run, then asks for the ``images`` or the drift (``check``).
    Leaving the ``with`` ends whichever it did not wait for (a refused run).

    ``environments`` is the inventory (its environments and services), or for an inventory
    of one service its environments alone."""

    def __init__(self, environments: Mapping[str, Any], envs: Iterable[str],
                 kubeconfig: str) -> None:
        inventory = environments if "environments" in environments else \
            {"environments": environments}
        self._scratch = tempfile.TemporaryDirectory(prefix="runbook-kubectl-")
        environ = _home_for_kubectl(Path(self._scratch.name))
        self._started: list[tuple[str, Mapping[str, Any], Any, Any]] = []
        try:
            for name in envs:
                env = {**inventory["environments"][name],
                       "services": services_mod.of(inventory, name)}
                render: Any = None
                read: Any = None
                try:
                    render = _kubectl(["kustomize", str(Path(str(env["overlay"])))], environ)
                    read = _read_cluster(env, kubeconfig, environ)
                except (OSError, KeyError, TypeError) as exc:
                    render = render or exc
                    read = read or exc
                self._started.append((name, env, render, read))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Reads:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def images(self) -> list[tuple[str, Any, Any, dict[str, str]]]:
        return [(name, *_images(env, render, read))
                for name, env, render, read in self._started]

    def check(self, store: StateStore) -> list[Drift]:
        """As the module's ``check``, with the reads already started."""
        return [compare(name, overlay, cluster, last_change(store, name), unreadable)
                for name, overlay, cluster, unreadable in self.images()]

    def close(self) -> None:
        for _, _, render, read in self._started:
            for started in (render, read):
                if isinstance(started, subprocess.Popen) and started.returncode is None:
                    started.kill()
                    started.communicate()
        self._scratch.cleanup()


def _images(env: Mapping[str, Any], render: Any, read: Any) -> tuple[Any, Any, dict[str, str]]:
    unreadable: dict[str, str] = {}
    overlay = cluster = None
    found = env["services"]
    try:
        if isinstance(render, Exception):
            raise render
        rendered = _output(render, f"kubectl kustomize {env['overlay']}")
        overlay = services_mod.per_service(
            [{**s, "image": overlay_image(rendered, str(env["overlay"]), str(s["deployment"]),
                                          str(s["container"]))} for s in found], "image")
    except (LookupError, OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        unreadable["overlay"] = str(exc)
    try:
        if isinstance(read, Exception):
            raise read
        one = len(found) == 1
        what = (f"deployment {found[0]['deployment']}" if one else "the deployments") + \
            f" in {env['namespace']}"
        try:
            answer = json.loads(_output(read, what))
        except json.JSONDecodeError as exc:
            raise LookupError(f"{what}: not a deployment ({exc})") from None
        deps = {str(d["metadata"]["name"]): d for d in
                ([answer] if one else answer.get("items") or [])}
        images = []
        for s in found:
            dep = deps.get(str(s["deployment"]))
            if dep is None:
                raise LookupError(f"{s['name']}: deployment {s['deployment']} not found in "
                                  f"{env['namespace']}")
            images.append({**s, "image": _container_image(
                dep["spec"]["template"]["spec"]["containers"], str(s["container"]))})
        cluster = services_mod.per_service(images, "image")
    except (LookupError, OSError, KeyError, TypeError) as exc:
        unreadable["cluster"] = str(exc)
    return overlay, cluster, unreadable
