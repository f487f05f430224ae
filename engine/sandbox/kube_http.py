"""HTTP front of the Kubernetes emulator: discovery, routing, patch types, Status errors, and
watches (a chunked stream of ADDED, MODIFIED and DELETED events, ending at timeoutSeconds)."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from engine.sandbox.clock import SandboxClock
from engine.sandbox.kube import RESOURCES, VERBS, ApiError, Cluster
from engine.sandbox.metrics import Traffic

SHORT_NAMES = {"deployments": ["deploy"], "replicasets": ["rs"], "pods": ["po"],
               "namespaces": ["ns"], "configmaps": ["cm"], "services": ["svc"]}
_PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<group>[^/]+)/(?P<gv>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>status|scale))?$")


def discovery(path: str) -> dict[str, Any] | None:
    if path == "/version":
        return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-runbook-sandbox",
                "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    groups = sorted({g for g, _, _ in RESOURCES if g})
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in groups]}
    for g in groups:
        if path == f"/apis/{g}":
            return {"kind": "APIGroup", "apiVersion": "v1", "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
    match = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/(v1)", path)
    if match:
        group = match.group(2) or ""
        version = "v1"
        resources = []
        for (g, v, plural), (kind, namespaced) in RESOURCES.items():
            if g == group and v == version:
                base = {"namespaced": namespaced, "kind": kind, "verbs": VERBS,
                        "singularName": kind.lower()}
                resources.append({"name": plural, **base,
                                  "shortNames": SHORT_NAMES.get(plural, [])})
                resources.append({"name": f"{plural}/status", **base,
                                  "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch, except lists of named objects (containers, env, ports) merge by name."""
    if isinstance(patch, list) and isinstance(target, list) and patch \
            and all(isinstance(i, dict) and "name" in i for i in patch + target):
        by_name = {i["name"]: copy.deepcopy(i) for i in target}
        order = [i["name"] for i in target]
        for item in patch:
            if item.get("$patch") == "delete":
                by_name.pop(item["name"], None)
                continue
            if item["name"] not in by_name:
                order.append(item["name"])
            by_name[item["name"]] = strategic_merge_patch(by_name.get(item["name"], {}), item)
        return [by_name[n] for n in order if n in by_name]
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        else:
            out[key] = strategic_merge_patch(out.get(key), value)
    return out


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(idx, op["value"])
                else:
                    parent[idx] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last)
        elif op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise ApiError(422, "Invalid", f"test failed at {op['path']}")
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']}")
    return doc


class _Handler(BaseHTTPRequestHandler):
    server: KubeServer
    protocol_version = "HTTP/1.1"
    # As the API server (Go's net/http) answers: each write goes out at once. With Nagle's
    # algorithm, a body written after its headers waits for the client's delayed ACK, 40 ms
    # on every request of a kept-alive connection after its first.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        try:
            body = self._body()
            found = discovery(url.path.rstrip("/")) if method == "GET" else None
            if found is not None:
                return self._send(200, found)
            if url.path.startswith("/sandbox/health/"):
                return self._health(url.path.removeprefix("/sandbox/health/"))
            if url.path.startswith("/sandbox/metrics/") and method == "GET":
                return self._metrics(url.path.removeprefix("/sandbox/metrics/"))
            if method == "POST" and url.path == "/sandbox/reset" and self.server.reset:
                return self._reset(self.server.reset)
            if url.path.startswith("/sandbox/notify/") and method == "POST":
                # The team's chat, as the sandbox plays it: notify steps post here (json://).
                self.server.notifications.append(
                    {"audience": url.path.removeprefix("/sandbox/notify/"), **(body or {})})
                return self._send(200, {"status": "received"})
            if url.path == "/sandbox/notifications" and method == "GET":
                return self._send(200, list(self.server.notifications))
            if url.path.startswith("/sandbox/clock") and self.server.clock:
                return self._clock(self.server.clock, method, url.path, parse_qs(url.query))
            query = parse_qs(url.query)
            answer = self._resource(method, url.path, query, body)
            if isinstance(answer, _Watch):
                with self.server.watched:
                    self.server.watch_requests += 1
                    self.server.watched.notify_all()
                if not self.server.serve_watches:
                    raise ApiError(405, "MethodNotAllowed", "this server does not serve watches")
                return self._watch(answer, query)
            self._send(200, answer)
        except ApiError as err:
            self._send(err.code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Failure", "message": err.message,
                                  "reason": err.reason, "code": err.code})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._send(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "message": f"bad request: {exc}", "reason": "BadRequest",
                             "code": 400})

    def _reset(self, reset: Callable[[], None]) -> None:
        with self.server.resetting:
            try:
                reset()
            except Exception as exc:  # the sandbox is then in no known state: say why
                return self._send(500, {"status": "failed", "message": repr(exc)})
        self._send(200, {"status": "reset"})

    def _clock(self, clock: SandboxClock, method: str, path: str,
               query: dict[str, list[str]]) -> None:
        action = path.removeprefix("/sandbox/clock").strip("/")
        if method == "GET" and not action:
            return self._send(200, clock.state())
        if method == "POST" and action == "sleep":
            return self._send(200, {"now": clock.sleep(float(query["seconds"][0]))})
        if method == "POST" and action in ("hold", "release"):
            if action == "hold":
                clock.hold()
            else:
                clock.release()
            return self._send(200, clock.state())
        raise ApiError(404, "NotFound", f"the server could not find {path}")

    def _health(self, where: str) -> None:
        """The service's health endpoint, as the sandbox plays it: up while the deployment
        has all its replicas available (the first probe of a crashing release crashes it)."""
        ns, _, name = where.partition("/")
        self.server.cluster.probe(ns, name)
        dep = self.server.cluster.get("apps", "deployments", ns, name)
        want = dep.get("spec", {}).get("replicas", 1)
        ok = dep.get("status", {}).get("availableReplicas") == want
        self._send(200 if ok else 503, {"status": "ok" if ok else "unavailable"})

    def _metrics(self, where: str) -> None:
        """The service's metrics endpoint, which the sandbox's Prometheus scrapes (see
        engine/sandbox/metrics.py); scraping it never probes the service, so a crashing
        release still crashes only when its health URL is first asked."""
        ns, _, name = where.partition("/")
        raw = self.server.traffic.scrape(
            self.server.cluster.get("apps", "deployments", ns, name)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        if "yaml" in (self.headers.get("Content-Type") or ""):
            return yaml.safe_load(raw)
        return json.loads(raw)

    def _resource(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        match = _PATH.match(path)
        if not match:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        group = match.group("group") or ""
        version = match.group("cv") or match.group("gv")
        plural, name, sub = match.group("plural"), match.group("name"), match.group("sub")
        ns = match.group("ns")
        if (group, version, plural) not in RESOURCES:
            raise ApiError(404, "NotFound", f"the server could not find resource {plural}")
        kind, namespaced = RESOURCES[(group, version, plural)]
        cluster = self.server.cluster
        scope_ns = (ns or "") if namespaced else ""
        if method == "GET" and name is None:
            selector = query.get("labelSelector", [None])[0]
            fields = _field_selector(query.get("fieldSelector", [""])[0])
            if query.get("watch", [""])[0] in ("true", "1"):
                return _Watch(group, plural, ns if namespaced else None, selector, fields)
            items = [o for o in cluster.list_objects(group, plural, ns if namespaced else None,
                                                     selector) if _fields_match(o, fields)]
            return {"kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group
                    else version, "metadata": {"resourceVersion": str(cluster.version)},
                    "items": items}
        if method == "GET":
            return cluster.get(group, plural, scope_ns, name)
        dry_run = "dryRun" in query  # validate and answer, store nothing
        if method == "POST":
            if dry_run:
                return body or {}
            return cluster.create(group, version, plural, scope_ns, body or {})
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs a name")
        if method == "DELETE":
            if dry_run:
                return cluster.get(group, plural, scope_ns, name)
            return cluster.delete(group, plural, scope_ns, name)
        if method == "PUT":
            if dry_run:
                cluster.get(group, plural, scope_ns, name)
                return body or {}
            return cluster.replace(group, version, plural, scope_ns, name, body or {},
                                   subresource=sub)
        # PATCH
        with cluster.lock:
            current = cluster.get(group, plural, scope_ns, name)
            ctype = self.headers.get("Content-Type") or ""
            if "json-patch" in ctype:
                new = json_patch(current, body or [])
            elif "strategic" in ctype or "apply-patch" in ctype:
                new = strategic_merge_patch(current, body or {})
            else:
                new = merge_patch(current, body or {})
            if dry_run:
                return new
            return cluster.replace(group, version, plural, scope_ns, name, new, subresource=sub)

    def _watch(self, watch: _Watch, query: dict[str, list[str]]) -> None:
        """Stream the changes to what the list would hold, after the resourceVersion asked for
        (from the start when none is), until timeoutSeconds pass or the client goes away."""
        cluster = self.server.cluster
        since = query.get("resourceVersion", ["0"])[0] or "0"
        deadline = time.monotonic() + float(query.get("timeoutSeconds", ["1800"])[0])
        last: dict[str, tuple[int, dict[str, Any]]] = {}  # what the client was last sent
        seen = [-1]  # the cluster's version when last looked at
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            while True:
                with cluster.changed:
                    cluster.changed.wait_for(lambda: cluster.version != seen[0],
                                             timeout=max(0.0, deadline - time.monotonic()))
                    seen[0] = cluster.version
                    items = [o for o in cluster.list_objects(watch.group, watch.plural,
                                                             watch.ns, watch.selector)
                             if _fields_match(o, watch.fields)]
                for kind, obj in _events(items, last, int(since)):
                    self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                if time.monotonic() >= deadline:
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped watching

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, code: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@dataclass(frozen=True)
class _Watch:
    """A list request with ``watch=true``: what to stream."""

    group: str
    plural: str
    ns: str | None
    selector: str | None
    fields: dict[str, str]


def _field_selector(text: str) -> dict[str, str]:
    """``metadata.name=NAME,metadata.namespace=NS``: the fields the emulator can select on."""
    fields = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(metadata\.name|metadata\.namespace)\s*==?\s*(.*)", part)
        if not match:
            raise ApiError(400, "BadRequest", f'field label not supported: "{part}"')
        fields[match.group(1)] = match.group(2)
    return fields


def _fields_match(obj: dict[str, Any], fields: dict[str, str]) -> bool:
    meta = obj.get("metadata", {})
    return all(meta.get(key.removeprefix("metadata.")) == value for key, value in fields.items())


def _events(items: list[dict[str, Any]], last: dict[str, tuple[int, dict[str, Any]]],
            since: int) -> list[tuple[str, dict[str, Any]]]:
    """The watch events from what the client was last sent to ``items``; updates ``last``."""
    events = []
    now = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in items}
    for key, obj in now.items():
        version = int(obj["metadata"]["resourceVersion"])
        before = last[key][0] if key in last else since
        if version > before:
            events.append(("ADDED" if not since and key not in last else "MODIFIED", obj))
            last[key] = (version, obj)
    for key in [k for k in last if k not in now]:
        events.append(("DELETED", last.pop(key)[1]))
    return events


class KubeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], cluster: Cluster, *,
                 serve_watches: bool = True) -> None:
        super().__init__(address, _Handler)
        self.cluster = cluster
        # Without watches it answers as an API server (or proxy) that refuses them; a test
        # sees each watch asked for, served or not.
        self.serve_watches = serve_watches
        self.watch_requests = 0
        self.watched = threading.Condition()
        # What POST /sandbox/reset does: the sandbox process sets it once it is seeded.
        self.reset: Callable[[], None] | None = None
        self.clock: SandboxClock | None = None
        self.resetting = threading.Lock()
        self.notifications: list[dict[str, Any]] = []  # what notify steps posted, oldest first
        self.traffic = Traffic()  # what each deployment served, as its metrics count it

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread
