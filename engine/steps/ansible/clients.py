"""Which client libraries a playbook's tasks use, so the warm worker can load them ahead
(``host.py``'s parts: kubernetes; aws; ecr and rds, boto3 with that service's models).

Known by each task's module, by its full name: the project's plugins
(``runbook.platform.*``) one by one, the bundled collections by their namespace. A hint
only: a wrong one costs time, never a result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

# The collection runbooks/collections holds: what each of its plugins calls.
PLATFORM = "runbook.platform"
PLUGINS: Mapping[str, tuple[str, ...]] = {
    "ecr_image": ("ecr",), "ecr_retag": ("ecr",),
    "k8s_deployment": ("kubernetes",), "k8s_rollout": ("kubernetes",),
    "kustomize_apply": ("kubernetes",), "verify_window": ("kubernetes",),
    "kustomize_image": (), "overlay_commit": (),
    "rds_snapshot_choose": ("rds",),
}
# A bundled collection's modules, by its namespace, and the AWS services whose models its
# modules load by their names' start (amazon.aws.ecr_*, amazon.aws.rds_instance_info).
NAMESPACES: Mapping[str, tuple[str, ...]] = {
    "kubernetes.core": ("kubernetes",), "amazon.aws": ("aws",), "community.aws": ("aws",),
}
SERVICES = ("ecr", "rds")
_BLOCKS = ("block", "rescue", "always")


def of_module(module: str) -> tuple[str, ...]:
    """The clients the module (or action plugin) named ``module`` uses."""
    namespace, _, short = module.rpartition(".")
    if namespace == PLATFORM:
        return PLUGINS.get(short, ())
    found = NAMESPACES.get(namespace, ())
    if found:
        found += tuple(s for s in SERVICES if short.startswith(s))
    return found


def of_playbook(text: str) -> list[str]:
    """The clients a playbook's tasks use, in the order its tasks first need them. Raises
    yaml.YAMLError for a playbook that is not YAML."""
    loader = _Loader(text)
    try:
        plays = loader.get_single_data()
    finally:
        loader.dispose()
    found: list[str] = []
    for module in modules(plays):
        found += [c for c in of_module(module) if c not in found]
    return found


class _Loader(yaml.SafeLoader):
    """YAML as Ansible writes it: a value tagged ``!unsafe`` or ``!vault`` is read as it is
    written."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _untagged)


def modules(plays: Any) -> Iterator[str]:
    """The module each task of the plays names by its full name (``namespace.collection.
    name``: a task keyword has no dot), in order; imported playbooks and roles are not
    followed."""
    for play in plays if isinstance(plays, list) else ():
        if isinstance(play, Mapping):
            for part in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                yield from _tasks(play.get(part))


def _tasks(tasks: Any) -> Iterator[str]:
    for task in tasks if isinstance(tasks, list) else ():
        if not isinstance(task, Mapping):
            continue
        for block in _BLOCKS:
            yield from _tasks(task.get(block))
        action = task.get("action") or task.get("local_action")
        if isinstance(action, Mapping):
            action = action.get("module")
        names = [str(action).split(maxsplit=1)[0]] if isinstance(action, str) and \
            action.strip() else [str(key) for key in task]
        yield from (name for name in names if "." in name)
