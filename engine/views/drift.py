"""Drift: whether an environment's overlay, its cluster and the engine's history agree on the
image it runs.

Three records of one fact can part: a change made on the cluster alone (``kubectl set
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

from engine.store import HistoryRecord, StateStore
from engine.trust.gates import CHANGE_KINDS

RENDER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Drift:
    """What each of the three says an environment runs, and how they disagree."""

    env: str
    overlay: str | None
    cluster: str | None
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
    if overlay is not None and cluster is not None and overlay != cluster:
        problems.append(f"{env}: the overlay renders {overlay}, the cluster runs {cluster}")
    recorded = _history(last)
    if recorded and cluster is not None and recorded["image"] != cluster:
        problems.append(f"{env}: the last recorded change ({recorded['kind']} at "
                        f"{recorded['at']}, run {recorded['run_id']}) is to "
                        f"{recorded['image'] or 'an image not recorded'}, the cluster runs "
                        f"{cluster}")
    return Drift(env, overlay, cluster, recorded, tuple(problems), checked)


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
    path = (f"/apis/apps/v1/namespaces/{urllib.parse.quote(str(env['namespace']), safe='')}"
            f"/deployments/{urllib.parse.quote(str(env['deployment']), safe='')}")
    options = [*(["--kubeconfig", kubeconfig] if kubeconfig else []),
               *(["--context", str(env["context"])] if env.get("context") else [])]
    return _kubectl([*options, "--request-timeout", f"{RENDER_TIMEOUT:.0f}s", "get", "--raw",
                     path], environ)


def check(environments: Mapping[str, Mapping[str, Any]], envs: Iterable[str],
          store: StateStore, kubeconfig: str) -> list[Drift]:
    """The drift of each of ``envs``, in the order given. Every overlay is rendered
    (``kubectl kustomize``, as the deploy renders it) and every deployment read at once."""
    with Reads(environments, envs, kubeconfig) as reads:
        return reads.check(store)


def check_recorded(environments: Mapping[str, Mapping[str, Any]], envs: Iterable[str],
                   last: Mapping[str, HistoryRecord], kubeconfig: str) -> list[Drift]:
    """As ``check``, with each environment's last recorded change read by the caller (the
    board reads those of every environment in one query)."""
    return [compare(name, overlay, cluster, last.get(name), unreadable)
            for name, overlay, cluster, unreadable in read_images(environments, envs,
                                                                   kubeconfig)]


def read_images(environments: Mapping[str, Mapping[str, Any]], envs: Iterable[str],
                kubeconfig: str) -> list[tuple[str, str | None, str | None, dict[str, str]]]:
    """What each overlay renders and each cluster runs (with why one could not be read),
    every kubectl started before any is waited for."""
    with Reads(environments, envs, kubeconfig) as reads:
        return reads.images()


class Reads:
    """The kubectl commands that read what ``envs`` run, started at once: the caller does
    its own work while they run, then asks for the ``images`` or the drift (``check``).
    Leaving the ``with`` ends whichever it did not wait for (a refused run)."""

    def __init__(self, environments: Mapping[str, Mapping[str, Any]], envs: Iterable[str],
                 kubeconfig: str) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="runbook-kubectl-")
        environ = _home_for_kubectl(Path(self._scratch.name))
        self._started: list[tuple[str, Mapping[str, Any], Any, Any]] = []
        try:
            for name in envs:
                env = environments[name]
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

    def images(self) -> list[tuple[str, str | None, str | None, dict[str, str]]]:
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


def _images(env: Mapping[str, Any], render: Any, read: Any
            ) -> tuple[str | None, str | None, dict[str, str]]:
    unreadable: dict[str, str] = {}
    overlay = cluster = None
    try:
        if isinstance(render, Exception):
            raise render
        overlay = overlay_image(_output(render, f"kubectl kustomize {env['overlay']}"),
                                str(env["overlay"]), str(env["deployment"]),
                                str(env["container"]))
    except (LookupError, OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        unreadable["overlay"] = str(exc)
    try:
        if isinstance(read, Exception):
            raise read
        what = f"deployment {env['deployment']} in {env['namespace']}"
        try:
            dep = json.loads(_output(read, what))
        except json.JSONDecodeError as exc:
            raise LookupError(f"{what}: not a deployment ({exc})") from None
        cluster = _container_image(dep["spec"]["template"]["spec"]["containers"],
                                   str(env["container"]))
    except (LookupError, OSError, KeyError, TypeError) as exc:
        unreadable["cluster"] = str(exc)
    return overlay, cluster, unreadable
