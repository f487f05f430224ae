"""Action plugin: a deployment's rollout history, and undo to a chosen ReplicaSet.

Undo targets a ReplicaSet by its pod-template-hash, not by revision number: a rollback gives
the old ReplicaSet the next revision, so a re-run after a crash must not look for the old
number again. Undoing to the template the deployment already runs changes nothing.

Options: action (history or undo), namespace, deployment (required); kubeconfig, context;
history: to_revision (0: the previous revision), choose (previous, or running: the target is
what runs now, what a failed change goes back to); undo: to_hash (the pod-template-hash of the
ReplicaSet to go back to); an undo's diff shows the image before and after.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    Kube,
    RunbookAction,
    kube_api,
)

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"


def _revisions(kube: Kube, p: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    dep = kube.deployment(p["namespace"], p["deployment"])
    uid = dep["metadata"].get("uid")
    mine = [rs for rs in kube.replica_sets(p["namespace"])
            if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])]
    current = int((dep["metadata"].get("annotations") or {}).get(REVISION, 0))
    out = []
    for rs in mine:
        meta = rs["metadata"]
        rev = int((meta.get("annotations") or {}).get(REVISION, 0))
        containers = rs["spec"]["template"]["spec"].get("containers") or []
        out.append({"revision": rev, "hash": (meta.get("labels") or {}).get(HASH, ""),
                    "image": containers[0].get("image", "") if containers else "",
                    "created": _time(meta.get("creationTimestamp")),
                    "current": rev == current, "name": meta["name"]})
    out.sort(key=lambda r: r["revision"], reverse=True)
    return current, out


def _time(stamp: str | None) -> str:
    """An API timestamp (``2024-05-01T10:00:00Z``) as ISO 8601 with its offset."""
    if not stamp:
        return ""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()


def history(kube: Kube, p: dict[str, Any]) -> dict[str, Any]:
    current, revs = _revisions(kube, p)
    wanted = p["to_revision"]
    cur = next((r for r in revs if r["current"]), None)
    if p["choose"] == "running":
        target = cur
        problem = None if cur else "the deployment runs no revision"
    elif wanted:
        target = next((r for r in revs if r["revision"] == wanted), None)
        problem = None
        if target is None:
            known = ", ".join(str(r["revision"]) for r in revs)
            problem = f"revision {wanted} does not exist (revisions: {known})"
        elif target["current"]:
            problem = f"revision {wanted} is the one running now"
    else:
        older = [r for r in revs if r["revision"] < current]
        target = older[0] if older else None
        problem = None if target else "there is no previous revision to go back to"
    lines = [f"{'*' if r['current'] else ' '} {r['revision']:>3}  {r['image']}  {r['created']}"
             for r in revs]
    summary = "rollout history (* = running):\n" + "\n".join(lines)
    if target and not problem and p["choose"] == "running":
        summary += (f"\nif the change fails, it goes back to revision {target['revision']} "
                    f"({target['image']}), the one running now")
    elif target and not problem:
        summary += f"\nwill go back to revision {target['revision']} ({target['image']})"
    return {"current": cur, "revisions": revs, "target": None if problem else target,
            "problem": problem, "summary": summary}


def undo(kube: Kube, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    current, revs = _revisions(kube, p)
    cur = next((r for r in revs if r["current"]), None)
    target = next((r for r in revs if r["hash"] == p["to_hash"]), None)
    if target is None:
        raise Failed(f"no ReplicaSet of {p['deployment']} with template hash "
                     f"{p['to_hash']}")
    if cur and cur["hash"] == target["hash"]:
        return {"changed": False, "revision": current, "image": target["image"]}
    template = kube.replica_set(p["namespace"], target["name"])["spec"]["template"]
    template.get("metadata", {}).get("labels", {}).pop(HASH, None)
    if not check_mode:
        kube.patch_deployment(p["namespace"], p["deployment"],
                              [{"op": "replace", "path": "/spec/template", "value": template}])
    where = f"deployment {p['namespace']}/{p['deployment']}"
    return {"changed": True, "from_revision": current, "to_image": target["image"],
            "to_hash": target["hash"],
            "diff": {"before": f"revision {current}: {cur['image'] if cur else '?'}\n",
                     "after": f"the template of revision {target['revision']} "
                              f"({target['hash']}): {target['image']}\n",
                     "before_header": where, "after_header": where}}


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "action": {"type": "str", "choices": ["history", "undo"], "required": True},
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "namespace": {"type": "str", "required": True},
        "deployment": {"type": "str", "required": True},
        "to_revision": {"type": "int", "default": 0},
        "to_hash": {"type": "str"},
        "choose": {"type": "str", "choices": ["previous", "running"], "default": "previous"},
    }
    RULES: ClassVar[dict[str, Any]] = {
        "required_if": [("action", "undo", ["to_hash"])],
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        kube = kube_api(p["kubeconfig"], p["context"])
        if p["action"] == "history":
            return history(kube, p)
        return undo(kube, p, check_mode)
