"""What the project's action plugins share: argument checking, results in a module's shape,
and the AWS and Kubernetes clients.

The project's tasks run as action plugins, inside Ansible's own worker process, rather than
as modules: a module is a new Python process that imports boto3 or the kubernetes client again
(about half a second) for an API call of a few milliseconds. A plugin checks its arguments
against the same kind of spec a module declares, and answers with the same result a module
would (``changed``, ``failed`` and ``msg``, the values, a ``diff``), in check mode too.

The clients are made once per process, for each endpoint or kubeconfig: boto3 and the
kubernetes client read the same settings as before (``endpoint_url`` and ``region`` or the
AWS_* environment; ``kubeconfig`` and ``context``, else K8S_AUTH_KUBECONFIG and
K8S_AUTH_CONTEXT, else KUBECONFIG).

The plugins import it as ``ansible_collections.runbook.platform.plugins.module_utils.
runbook_action``: Ansible's collection loader finds it wherever the collection is installed.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any, ClassVar

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

_CLIENTS: dict[tuple[Any, ...], Any] = {}


class Failed(Exception):
    """The task fails with this message; ``extra`` is returned beside it, as a module's
    ``fail_json(msg=..., **extra)`` would."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


# Every plugin's option: the names of its results to pass on as the step's outputs, as an
# ``ansible.builtin.set_stats`` task after it would (``per_host: false``, aggregated), without
# the task (each task is a process Ansible forks, 25-35 ms).
PASS_ON = {"pass_on": {"type": "list", "elements": "str", "default": []}}


class RunbookAction(ActionBase):
    """An action plugin checks its arguments with ``SPEC`` (a module's ``argument_spec`` and
    its ``mutually_exclusive`` and the like, in ``RULES``), then runs ``act``; with
    ``pass_on``, the named results become the step's outputs."""

    _supports_check_mode = True
    _requires_connection = False  # everything happens here, on the controller
    SPEC: ClassVar[dict[str, Any]] = {}
    RULES: ClassVar[dict[str, Any]] = {}

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        name = self._task.action.rpartition(".")[2]
        validator = ArgumentSpecValidator({**self.SPEC, **PASS_ON}, **self.RULES)
        checked = validator.validate(dict(self._task.args))
        if checked.error_messages:  # reported as AnsibleModule does: the first error
            msg = checked.errors.msg
            if isinstance(checked.errors.errors[0], UnsupportedError):
                msg = f"Unsupported parameters for ({name}) module: {msg}"
            return {**result, "failed": True, "msg": msg}
        params = plain(checked.validated_parameters)
        names = params.pop("pass_on")
        try:
            out = self.act(params, bool(self._task.check_mode))
        except Failed as err:
            return {**result, **err.extra, "failed": True, "msg": err.msg}
        unknown = [n for n in names if n not in out]
        if unknown:
            return {**result, **out, "failed": True,
                    "msg": f"pass_on: {name} has no result named {', '.join(unknown)} "
                           f"(its results: {', '.join(sorted(out))})"}
        if names:
            out = {**out, "ansible_stats": {"data": {n: out[n] for n in names},
                                            "per_host": False, "aggregate": True}}
        return {**result, "changed": False, **out}

    def act(self, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        raise NotImplementedError


def plain(value: Any) -> Any:
    """The value with Ansible's tagged strings and containers made plain Python ones, as a
    module receives them: a YAML dumper or a client library may not know Ansible's types."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def aws(service: str, region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 client, made once per process for each region and endpoint."""
    key = ("aws", service, region or None, endpoint_url or None)
    if key not in _CLIENTS:
        import boto3

        _CLIENTS[key] = boto3.client(service, region_name=region or None,
                                     endpoint_url=endpoint_url or None)
    return _CLIENTS[key]


def kube(kubeconfig: str | None, context: str | None) -> Any:
    """A kubernetes ApiClient, made once per process for each kubeconfig and context."""
    kubeconfig = kubeconfig or os.environ.get("K8S_AUTH_KUBECONFIG") or None
    context = context or os.environ.get("K8S_AUTH_CONTEXT") or None
    key = ("kube", kubeconfig, context)
    if key not in _CLIENTS:
        from kubernetes import config

        _CLIENTS[key] = config.new_client_from_config(config_file=kubeconfig, context=context)
    return _CLIENTS[key]


class Kube:
    """The Kubernetes API calls the plugins make, as plain JSON, through the client's
    ``ApiClient`` (its kubeconfig, authentication, TLS and errors: ``ApiException``). The
    client's generated API classes and models would take longer to import (AppsV1Api and
    CoreV1Api about a second) than the calls take."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def call(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None, content_type: str | None = None,
             timeout: float | None = None) -> Any:
        """The response, unread (a urllib3 response: read its ``data``, or stream it); a
        status other than 2xx raises ``ApiException``, as the API classes do."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method, path, query_params=[(k, v) for k, v in (query or {}).items()
                                        if v is not None],
            header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(*request, _request_timeout=timeout)
        if not 200 <= resp.status <= 299:
            resp.read()
            raise ApiException.from_response(http_resp=resp, body=None, data=None)
        return resp.response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json.loads(self.call(method, path, **kwargs).data)

    def deployment(self, namespace: str, name: str) -> Any:
        return self.json("GET", _apps(namespace, "deployments", name))

    def replica_sets(self, namespace: str) -> list[Any]:
        return list(self.json("GET", _apps(namespace, "replicasets")).get("items") or [])

    def replica_set(self, namespace: str, name: str) -> Any:
        return self.json("GET", _apps(namespace, "replicasets", name))

    def patch_deployment(self, namespace: str, name: str, operations: list[Any]) -> Any:
        return self.json("PATCH", _apps(namespace, "deployments", name), body=operations,
                         content_type="application/json-patch+json")

    def pods(self, namespace: str, label_selector: str) -> list[Any]:
        path = f"/api/v1/namespaces/{part(namespace)}/pods"
        return list(self.json("GET", path, query={"labelSelector": label_selector})
                    .get("items") or [])

    def watch_deployments(self, namespace: str, field_selector: str, resource_version: str,
                          seconds: int, timeout: float) -> Any:
        """A watch of the namespace's deployments, as a streamed response."""
        return self.call("GET", _apps(namespace, "deployments"), timeout=timeout, query={
            "fieldSelector": field_selector, "resourceVersion": resource_version,
            "watch": "true", "timeoutSeconds": seconds})


def part(value: str) -> str:
    """A name in a request path, quoted: it is data, whatever it holds."""
    return urllib.parse.quote(str(value), safe="")


def _apps(namespace: str, kind: str, name: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{part(namespace)}/{kind}"
    return f"{path}/{part(name)}" if name is not None else path


def kube_api(kubeconfig: str | None, context: str | None) -> Kube:
    return Kube(kube(kubeconfig, context))


# Per-service values (engine/language/services.py): an option that names one thing (a tag,
# a deployment) may instead map service names to one each; the task then does its work for
# each service, and its results are mappings by service name too. A plain value is one
# service's, and its results are plain values, as they always were.

def services_of(p: dict[str, Any], primary: str, keys: tuple[str, ...]
                ) -> list[tuple[str | None, dict[str, Any]]]:
    """(service name, its options) for each service the options name: the names of the
    ``primary`` option when it is a mapping (another option that is a mapping gives each its
    own value, one that is not gives all the same), else one unnamed service."""
    if not isinstance(p.get(primary), dict):
        for key in keys:
            if isinstance(p.get(key), dict):
                raise Failed(f"{key} maps services to values but {primary} does not: give "
                             "both as mappings by service name, or neither")
        return [(None, p)]
    runs: list[tuple[str | None, dict[str, Any]]] = []
    for name in p[primary]:
        mine = dict(p)
        for key in keys:
            value = p.get(key)
            if isinstance(value, dict):
                if name not in value and key != primary:
                    mine[key] = None
                    continue
                mine[key] = value[name]
        runs.append((str(name), mine))
    return runs


def per_service(found: list[tuple[str | None, Any]]) -> Any:
    """A result for each service: the value itself for one unnamed service, else a mapping."""
    if len(found) == 1 and found[0][0] is None:
        return found[0][1]
    return {name: value for name, value in found}


def named(name: str | None, msg: str) -> str:
    """A message about one service, its name first when it has one."""
    return f"{name}: {msg}" if name else msg
