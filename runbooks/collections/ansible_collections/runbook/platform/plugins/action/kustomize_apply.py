"""Action plugin: render a kustomize overlay and apply it, as ``kubectl apply -k`` does.

The overlay is rendered with ``kubectl kustomize`` (the renderer the drift check uses too);
each document is applied the way ``kubernetes.core.k8s`` applies with ``apply: true``, with
its own functions: the last applied configuration is kept in the object's
``kubectl.kubernetes.io/last-applied-configuration`` annotation, and the change sent is a
merge patch from that, the live object and the document. An object that does not exist is
created. The API is reached through the kubernetes client's ``ApiClient`` (kubeconfig,
authentication, TLS); where a kind lives is read from the API's discovery documents.

Options: path (the overlay folder), namespace (for documents that name none); kubeconfig,
context. Check mode sends nothing and says whether anything would change. Result: changed,
and ``objects``: each document's kind, name, namespace and what was done (created, patched,
unchanged).
"""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    Kube,
    RunbookAction,
    kube_api,
    part,
)

RENDER_TIMEOUT = 120
# Fields the server changes on every write: not a change the apply made.
VOLATILE = ("resourceVersion", "generation", "managedFields")


def render(path: str) -> list[dict[str, Any]]:
    import yaml

    try:
        done = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True,
                              timeout=RENDER_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Failed(f"kubectl kustomize {path}: {err}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failed(f"kubectl kustomize {path} failed: {last}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if isinstance(doc, dict)]


class Resources:
    """Where each kind of an API version lives (its plural and whether it is namespaced),
    from the API's discovery documents, read once per version."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.known: dict[str, tuple[str, dict[str, Any]]] = {}

    def path(self, doc: dict[str, Any], namespace: str | None) -> tuple[str, bool]:
        version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if version not in self.known:
            base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
            found = self.kube.json("GET", base).get("resources") or []
            self.known[version] = (base, {r["kind"]: r for r in found if "/" not in r["name"]})
        base, kinds = self.known[version]
        if kind not in kinds:
            raise Failed(f"the API has no kind {kind} in {version}")
        resource = kinds[kind]
        where = base
        if resource.get("namespaced"):
            ns = doc.get("metadata", {}).get("namespace") or namespace
            if not ns:
                raise Failed(f"{kind} {doc['metadata'].get('name')} needs a namespace")
            where = f"{base}/namespaces/{part(ns)}"
        return f"{where}/{resource['name']}", bool(resource.get("namespaced"))


def plain(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in VOLATILE}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def apply_one(kube: Kube, resources: Resources, doc: dict[str, Any], namespace: str | None,
              check_mode: bool) -> tuple[dict[str, Any], bool]:
    from ansible.module_utils.common.dict_transformations import dict_merge
    from ansible_collections.kubernetes.core.plugins.module_utils.apply import (
        annotate,
        apply_patch,
    )
    from kubernetes.client.exceptions import ApiException

    collection, namespaced = resources.path(doc, namespace)
    name = doc.get("metadata", {}).get("name")
    if not name:
        raise Failed(f"a {doc.get('kind')} without a name")
    seen = {"kind": doc.get("kind"), "name": name,
            "namespace": (doc["metadata"].get("namespace") or namespace) if namespaced else None}
    try:
        actual = kube.json("GET", f"{collection}/{part(name)}")
    except ApiException as err:
        if err.status != 404:
            raise
        actual = None
    if actual is None:
        if not check_mode:
            kube.json("POST", collection, body=dict_merge(doc, annotate(doc)),
                      content_type="application/json")
        return {**seen, "action": "created"}, True
    _, patch = apply_patch(actual, doc)
    if patch is actual:  # nothing to send
        return {**seen, "action": "unchanged"}, False
    if check_mode:
        changed = plain(dict_merge(actual, patch)) != plain(actual)
    else:
        result = kube.json("PATCH", f"{collection}/{part(name)}", body=patch,
                           content_type="application/merge-patch+json")
        changed = plain(result) != plain(actual)
    return {**seen, "action": "patched" if changed else "unchanged"}, changed


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "path": {"type": "path", "required": True},
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "namespace": {"type": "str"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        docs = render(p["path"])
        kube = kube_api(p["kubeconfig"], p["context"])
        resources = Resources(kube)
        objects: list[dict[str, Any]] = []
        changed = False
        for doc in docs:
            seen, did = apply_one(kube, resources, doc, p["namespace"], check_mode)
            objects.append(seen)
            changed = changed or did
        return {"changed": changed, "objects": objects}
