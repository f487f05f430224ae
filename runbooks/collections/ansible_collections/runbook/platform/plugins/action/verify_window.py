"""Action plugin: watch a deployment for a verification window.

Every ``interval`` seconds for ``seconds``: the rollout must be complete and available, no pod
of the deployment may restart, and every HTTP check must answer with its expected status.
The first sample that fails ends the window with what was seen.

The window is measured on the wall clock, unless the kubeconfig's cluster names a clock of
its own (the extension ``runbook.sandbox/clock``, which only the sandbox's kubeconfig has:
engine/sandbox/clock.py) on this machine (a loopback address): then the window waits on that
clock, and its summary says so. A clock anywhere else is ignored: only the local sandbox may
shorten a window.

Options: namespace, deployment, seconds (required); kubeconfig, context; interval (default 5);
checks (a list of {name, url, status}); image (the image the deployment must keep running).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, ClassVar

import yaml
from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    Kube,
    RunbookAction,
    kube_api,
)

CLOCK_EXTENSION = "runbook.sandbox/clock"


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _WallClock:
    label = ""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _SandboxClock:
    label = " on the sandbox's clock"

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str = "") -> float:
        request = urllib.request.Request(self.url + path, method=method)
        # No timeout: a held clock keeps the window waiting as long as it is held.
        with urllib.request.urlopen(request) as resp:
            return float(json.load(resp)["now"])

    def now(self) -> float:
        return self._call("GET")

    def sleep(self, seconds: float) -> None:
        self._call("POST", f"/sleep?seconds={seconds}")


def _clock(kubeconfig: str | None, context: str | None) -> _WallClock | _SandboxClock:
    """The clock the kubeconfig's cluster names, else the wall clock."""
    path = kubeconfig or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] \
        or os.path.expanduser("~/.kube/config")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
        name = context or config["current-context"]
        cluster_name = next(c["context"]["cluster"] for c in config["contexts"]
                            if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == cluster_name)
        url = next(e["extension"]["url"] for e in cluster.get("extensions") or []
                   if e.get("name") == CLOCK_EXTENSION)
    except (OSError, yaml.YAMLError, LookupError, TypeError, AttributeError, StopIteration):
        return _WallClock()
    if urllib.parse.urlsplit(str(url)).hostname not in LOOPBACK:
        return _WallClock()
    return _SandboxClock(str(url))


def _sample(kube: Kube, p: dict[str, Any], baseline: dict[str, int]) -> list[str]:
    dep = kube.deployment(p["namespace"], p["deployment"])
    spec, st = dep["spec"], dep.get("status") or {}
    want = spec.get("replicas") or 0
    problems: list[str] = []
    running = spec["template"]["spec"]["containers"][0].get("image")
    if p["image"] and running != p["image"]:
        problems.append(f"runs {running}, not {p['image']}")
    if st.get("observedGeneration") != dep["metadata"].get("generation"):
        problems.append("rollout not observed yet")
    available = st.get("availableReplicas") or 0
    if (st.get("updatedReplicas") or 0) != want or available != want \
            or st.get("unavailableReplicas"):
        problems.append(f"{available}/{want} replicas available")
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    restarts: dict[str, int] = {}
    for pod in kube.pods(p["namespace"], selector):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            restarts[f"{pod['metadata']['name']}/{cs['name']}"] = cs.get("restartCount") or 0
    for key, count in restarts.items():
        if count > baseline.setdefault(key, count):
            problems.append(f"{key} restarted ({count} restarts)")
    for check in p["checks"]:
        expected = int(check.get("status", 200))
        try:
            with urllib.request.urlopen(check["url"], timeout=5) as resp:
                got: int | str = resp.status
        except urllib.error.HTTPError as err:
            got = err.code
        except OSError as err:
            got = f"unreachable ({err})"
        if got != expected:
            problems.append(f"check {check['name']}: {check['url']} answered {got}, "
                            f"expected {expected}")
    return problems


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "namespace": {"type": "str", "required": True},
        "deployment": {"type": "str", "required": True},
        "seconds": {"type": "float", "required": True},
        "interval": {"type": "float", "default": 5},
        "checks": {"type": "list", "elements": "dict", "default": []},
        "image": {"type": "str"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        kube = kube_api(p["kubeconfig"], p["context"])
        baseline: dict[str, int] = {}
        clock = _clock(p["kubeconfig"] or os.environ.get("K8S_AUTH_KUBECONFIG"),
                       p["context"] or os.environ.get("K8S_AUTH_CONTEXT"))
        start = clock.now()
        samples = 0
        while True:
            samples += 1
            problems = _sample(kube, p, baseline)
            elapsed = round(clock.now() - start, 1)
            if problems:
                raise Failed(f"verification failed after {elapsed} s: "
                             + "; ".join(problems), samples=samples, problems=problems)
            if check_mode or elapsed + p["interval"] > p["seconds"]:
                break
            clock.sleep(p["interval"])
        return {"samples": samples, "seconds": elapsed,
                "summary": f"healthy for {elapsed} s{clock.label} ({samples} samples, "
                           f"no restarts, {len(p['checks'])} checks passing)"}
