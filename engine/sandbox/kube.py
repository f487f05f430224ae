"""A Kubernetes API emulator served over HTTP, for the local sandbox and the tests.

It answers the discovery, CRUD, list (with label selectors) and patch requests that kubectl,
the kubernetes Python client and the kubernetes.core collection send, and plays the
deployment controller: a template change makes a ReplicaSet with the next
``deployment.kubernetes.io/revision``, older ReplicaSets scale to zero, and the deployment's
status converges after a short delay. A rollback (a template equal to an older ReplicaSet's)
gives that ReplicaSet the next revision, as on a real cluster.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"

# (group, version, plural) -> (kind, namespaced)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "pods"): ("Pod", True),
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "services"): ("Service", True),
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("apps", "v1", "replicasets"): ("ReplicaSet", True),
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

Key = tuple[str, str, str, str]  # (group, plural, namespace, name)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """The emulated cluster state and its deployment controller."""

    def __init__(self, rollout_delay: float = 1.0, crash_after: float = 3.0) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.lock = threading.RLock()
        # Notified on every change (under the lock): what a watch waits on.
        self.changed = threading.Condition(self.lock)
        self.version = 0
        self.rollout_delay = rollout_delay
        self.crash_after = crash_after  # between two crashes of a crashing release
        self._timers: list[threading.Timer] = []
        # A crashing release looks healthy until its service is first probed: however slow
        # the machine, a rollout wait sees it come up and a verification sees it crash.
        self._crash_on_probe: dict[tuple[str, str], tuple[int, str]] = {}
        # Bumped by restore(): what the controller scheduled before it is dropped.
        self._epoch = 0

    # -- saving and restoring the whole state ----------------------------------------------
    def settled(self) -> bool:
        """Every deployment's latest change has rolled out."""
        with self.lock:
            return all(o.get("status", {}).get("observedGeneration") ==
                       o["metadata"]["generation"]
                       for (_, plural, _, _), o in self.objects.items()
                       if plural == "deployments")

    def saved(self) -> tuple[dict[Key, dict[str, Any]], int]:
        with self.lock:
            return copy.deepcopy(self.objects), self.version

    def restore(self, saved: tuple[dict[Key, dict[str, Any]], int]) -> None:
        """Back to a state saved(): rollouts and crashes under way are forgotten."""
        objects, version = saved
        with self.lock:
            self.objects = copy.deepcopy(objects)
            self.version = version
            self._crash_on_probe.clear()
            self._epoch += 1
            self.changed.notify_all()

    # -- storage ---------------------------------------------------------------------------
    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.changed.notify_all()

    def get(self, group: str, plural: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get((group, plural, ns, name))
            if obj is None:
                kind_plural = plural + (f".{group}" if group else "")
                raise ApiError(404, "NotFound", f'{kind_plural} "{name}" not found')
            return copy.deepcopy(obj)

    def list_objects(self, group: str, plural: str, ns: str | None,
             selector: str | None = None) -> list[dict[str, Any]]:
        wanted = _parse_selector(selector)
        with self.lock:
            items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(self.objects.items())
                     if g == group and p == plural and (ns is None or n == ns)
                     and _matches(o, wanted)]
        return items

    def create(self, group: str, version: str, plural: str, ns: str,
               obj: dict[str, Any]) -> dict[str, Any]:
        kind, namespaced = RESOURCES[(group, version, plural)]
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + secrets.token_hex(3)[:5]
            meta["name"] = name
        if not name:
            raise ApiError(422, "Invalid", f"{kind}: metadata.name is required")
        key = (group, plural, ns if namespaced else "", name)
        with self.lock:
            if key in self.objects:
                raise ApiError(409, "AlreadyExists",
                               f'{plural}{"." + group if group else ""} "{name}" already exists')
            if namespaced and ("", "namespaces", "", ns) not in self.objects:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
            obj["apiVersion"] = f"{group}/{version}" if group else version
            obj["kind"] = kind
            if namespaced:
                meta["namespace"] = ns
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            self._bump(obj)
            self.objects[key] = obj
            if kind == "Deployment":
                self._reconcile(ns, name, template_changed=True)
            return copy.deepcopy(self.objects[key])

    def replace(self, group: str, version: str, plural: str, ns: str, name: str,
                obj: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        kind, namespaced = RESOURCES[(group, version, plural)]
        key = (group, plural, ns if namespaced else "", name)
        with self.lock:
            old = self.objects.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            new = copy.deepcopy(obj)
            if subresource == "status":
                merged = copy.deepcopy(old)
                merged["status"] = new.get("status", {})
                new = merged
            else:
                new["status"] = old.get("status", {})
            meta = new.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "name"):
                meta[field] = old["metadata"][field]
            if namespaced:
                meta["namespace"] = ns
            new["apiVersion"] = f"{group}/{version}" if group else version
            new["kind"] = kind
            spec_changed = new.get("spec") != old.get("spec")
            meta["generation"] = old["metadata"].get("generation", 1) + (1 if spec_changed else 0)
            if kind == "Deployment":
                # The controller owns the revision annotation.
                rev = old["metadata"].get("annotations", {}).get(REVISION)
                if rev:
                    meta.setdefault("annotations", {})[REVISION] = rev
            self._bump(new)
            self.objects[key] = new
            if kind == "Deployment" and spec_changed:
                old_template = old.get("spec", {}).get("template")
                self._reconcile(ns, name,
                                template_changed=new["spec"].get("template") != old_template)
            return copy.deepcopy(new)

    def delete(self, group: str, plural: str, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.get(group, plural, ns, name)
            del self.objects[(group, plural, ns, name)]
            self.version += 1
            self.changed.notify_all()
            if plural == "namespaces":
                for key in [k for k in self.objects if k[2] == name]:
                    del self.objects[key]
            if plural == "deployments":
                for rs in self.list_objects("apps", "replicasets", ns):
                    if _owned_by(rs, obj):
                        self._delete_rs(ns, rs)
            return obj

    # -- the deployment controller -----------------------------------------------------------
    def _reconcile(self, ns: str, name: str, *, template_changed: bool) -> None:
        dep = self.objects[("apps", "deployments", ns, name)]
        spec = dep.setdefault("spec", {})
        replicas = int(spec.get("replicas", 1))
        template = spec.setdefault("template", {})
        digest = hashlib.sha256(json.dumps(_strip_hash(template), sort_keys=True).encode())
        pth = digest.hexdigest()[:10]
        owned = [rs for (g, p, n, _), rs in self.objects.items()
                 if g == "apps" and p == "replicasets" and n == ns and _owned_by(rs, dep)]
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) for rs in owned]
        current = next((rs for rs in owned
                        if rs["metadata"].get("labels", {}).get(HASH_LABEL) == pth), None)
        top = max(revisions, default=0)
        if current is None:
            current = self._new_rs(dep, template, pth, top + 1)
            owned.append(current)
        elif int(current["metadata"]["annotations"].get(REVISION, 0)) != top:
            current["metadata"]["annotations"][REVISION] = str(top + 1)
            self._bump(current)
        dep["metadata"].setdefault("annotations", {})[REVISION] = \
            current["metadata"]["annotations"][REVISION]
        for rs in owned:
            want = replicas if rs is current else 0
            if rs["spec"].get("replicas") != want:
                rs["spec"]["replicas"] = want
                self._bump(rs)
        self._prune(ns, owned, current, int(spec.get("revisionHistoryLimit", 10)))
        generation = dep["metadata"]["generation"]
        status = dep.setdefault("status", {})
        status.update(replicas=replicas, updatedReplicas=0, readyReplicas=0,
                      availableReplicas=0, unavailableReplicas=replicas)
        status.setdefault("observedGeneration", generation - 1)
        status["conditions"] = [{"type": "Progressing", "status": "True",
                                 "reason": "ReplicaSetUpdated", "lastUpdateTime": _now()}]
        self._bump(dep)
        self._later(self.rollout_delay, self._converge, ns, name, generation,
                    current["metadata"]["name"])

    def _new_rs(self, dep: dict[str, Any], template: dict[str, Any], pth: str,
                revision: int) -> dict[str, Any]:
        ns = dep["metadata"]["namespace"]
        tmpl = copy.deepcopy(template)
        labels = {**tmpl.get("metadata", {}).get("labels", {}), HASH_LABEL: pth}
        tmpl.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(dep["spec"].get("selector", {"matchLabels": {}}))
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pth
        name = f"{dep['metadata']['name']}-{pth}"
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": name, "namespace": ns, "labels": labels,
                           "annotations": {REVISION: str(revision)},
                           "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                           "generation": 1,
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": dep["metadata"]["name"],
                                                "uid": dep["metadata"]["uid"],
                                                "controller": True}]},
              "spec": {"replicas": 0, "selector": selector, "template": tmpl},
              "status": {"replicas": 0}}
        self._bump(rs)
        self.objects[("apps", "replicasets", ns, name)] = rs
        return rs

    def _prune(self, ns: str, owned: list[dict[str, Any]], current: dict[str, Any],
               limit: int) -> None:
        old = sorted((rs for rs in owned if rs is not current),
                     key=lambda rs: int(rs["metadata"]["annotations"].get(REVISION, 0)))
        for rs in old[:max(0, len(old) - limit)]:
            self._delete_rs(ns, rs)

    def _delete_rs(self, ns: str, rs: dict[str, Any]) -> None:
        self.objects.pop(("apps", "replicasets", ns, rs["metadata"]["name"]), None)
        for key, pod in list(self.objects.items()):
            if key[1] == "pods" and key[2] == ns and _owned_by(pod, rs):
                del self.objects[key]

    def _converge(self, ns: str, name: str, generation: int, rs_name: str) -> None:
        with self.lock:
            dep = self.objects.get(("apps", "deployments", ns, name))
            rs = self.objects.get(("apps", "replicasets", ns, rs_name))
            if dep is None or rs is None or dep["metadata"]["generation"] != generation:
                return  # superseded by a newer change
            replicas = int(dep["spec"].get("replicas", 1))
            self._sync_pods(ns, rs, replicas)
            for other_key, other in list(self.objects.items()):
                if other_key[1] == "replicasets" and other is not rs and _owned_by(other, dep):
                    other["status"] = {"replicas": 0}
            self._set_available(dep, rs, replicas, available=True)
            if "crashloop" in _image(dep["spec"]["template"]):
                self._crash_on_probe[(ns, name)] = (generation, rs_name)

    def probe(self, ns: str, name: str) -> None:
        """The deployment's service is being probed: a crashing release now crashes."""
        with self.lock:
            pending = self._crash_on_probe.pop((ns, name), None)
            if pending is not None:
                self._crash(ns, name, *pending)

    def _set_available(self, dep: dict[str, Any], rs: dict[str, Any], replicas: int, *,
                       available: bool) -> None:
        ready = replicas if available else 0
        rs["status"] = {"replicas": replicas, "readyReplicas": ready,
                        "availableReplicas": ready, "observedGeneration": 1}
        self._bump(rs)
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
            **({} if available else {"unavailableReplicas": replicas}),
            "conditions": [
                {"type": "Available", "status": "True" if available else "False",
                 "reason": "MinimumReplicasAvailable" if available
                 else "MinimumReplicasUnavailable", "lastUpdateTime": _now()},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "lastUpdateTime": _now()}]}
        self._bump(dep)

    def _sync_pods(self, ns: str, rs: dict[str, Any], replicas: int) -> None:
        for key, pod in list(self.objects.items()):
            if key[1] == "pods" and key[2] == ns:
                owner = pod["metadata"].get("ownerReferences", [{}])[0]
                same_app = owner.get("name", "").rsplit("-", 1)[0] == \
                    rs["metadata"]["name"].rsplit("-", 1)[0]
                if same_app and not _owned_by(pod, rs):
                    del self.objects[key]
        have = [p for (g, pl, n, _), p in self.objects.items()
                if pl == "pods" and n == ns and _owned_by(p, rs)]
        for _ in range(replicas - len(have)):
            name = f"{rs['metadata']['name']}-{secrets.token_hex(3)[:5]}"
            containers = rs["spec"]["template"].get("spec", {}).get("containers", [])
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                                "creationTimestamp": _now(),
                                "labels": dict(rs["metadata"]["labels"]),
                                "ownerReferences": [{"apiVersion": "apps/v1",
                                                     "kind": "ReplicaSet",
                                                     "name": rs["metadata"]["name"],
                                                     "uid": rs["metadata"]["uid"],
                                                     "controller": True}]},
                   "spec": copy.deepcopy(rs["spec"]["template"].get("spec", {})),
                   "status": {"phase": "Running",
                              "containerStatuses": [
                                  {"name": c.get("name"), "image": c.get("image"),
                                   "imageID": f"{c.get('image')}@sha256:"
                                              + hashlib.sha256(str(c.get("image")).encode())
                                              .hexdigest(),
                                   "containerID": f"containerd://{secrets.token_hex(16)}",
                                   "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": _now()}}}
                                  for c in containers]}}
            self._bump(pod)
            self.objects[("", "pods", ns, name)] = pod

    def _crash(self, ns: str, name: str, generation: int, rs_name: str) -> None:
        """A bad release: its pods start, pass readiness once, then crash and restart again
        and again, and the deployment loses its available replicas."""
        dep = self.objects.get(("apps", "deployments", ns, name))
        rs = self.objects.get(("apps", "replicasets", ns, rs_name))
        if dep is None or rs is None or dep["metadata"]["generation"] != generation:
            return  # rolled back or changed since
        for key, pod in self.objects.items():
            if key[1] == "pods" and key[2] == ns and _owned_by(pod, rs):
                for cs in pod["status"]["containerStatuses"]:
                    cs.update(restartCount=cs["restartCount"] + 1, ready=False,
                              state={"waiting": {"reason": "CrashLoopBackOff"}})
                self._bump(pod)
        self._set_available(dep, rs, int(dep["spec"].get("replicas", 1)), available=False)
        self._later(self.crash_after, self._crash, ns, name, generation, rs_name)

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        timer = threading.Timer(delay, self._locked, (self._epoch, fn, *args))
        timer.daemon = True
        timer.start()

    def _locked(self, epoch: int, fn: Any, *args: Any) -> None:
        with self.lock:
            if epoch == self._epoch:
                fn(*args)


def _image(template: dict[str, Any]) -> str:
    containers = template.get("spec", {}).get("containers", [])
    return str(containers[0].get("image", "")) if containers else ""


def _strip_hash(template: dict[str, Any]) -> dict[str, Any]:
    tmpl = copy.deepcopy(template)
    tmpl.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return tmpl


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(ref.get("uid") == owner["metadata"].get("uid")
               for ref in obj["metadata"].get("ownerReferences", []))


def _parse_selector(selector: str | None) -> list[tuple[str, str, str]]:
    out = []
    for part in (selector or "").split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([^!=]+?)\s*(==|=|!=)\s*(.*)", part)
        if match:
            out.append((match.group(1), match.group(2), match.group(3)))
        else:
            out.append((part.lstrip("!"), "!" if part.startswith("!") else "exists", ""))
    return out


def _matches(obj: dict[str, Any], wanted: list[tuple[str, str, str]]) -> bool:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for key, op, value in wanted:
        if op in ("=", "==") and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True
