"""ansible-doc's page for runbook.platform.kustomize_apply. The task runs as the action plugin of
the same name (plugins/action/kustomize_apply.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kustomize_apply
short_description: Render a kustomize overlay and apply it as kubectl apply -k does
description:
  - Renders the overlay with C(kubectl kustomize) and applies each object as
    M(kubernetes.core.k8s) does with C(apply=true), with that collection's functions; the
    last applied configuration is kept in the object's
    C(kubectl.kubernetes.io/last-applied-configuration) annotation and the change sent is a
    merge patch from it, the live object and the overlay. An object that does not exist is
    created.
  - Check mode sends nothing and says whether anything would change.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.kube, runbook.platform.pass_on]
options:
  path:
    description: The overlay's folder.
    type: path
    required: true
  namespace:
    description: The namespace of the objects that name none.
    type: str
requirements:
  - kubectl (for C(kubectl kustomize))
"""

EXAMPLES = r"""
- name: Apply the overlay to the cluster
  runbook.platform.kustomize_apply:
    path: k8s/overlays/live
    namespace: quikapp-live
"""

RETURN = r"""
objects:
  description: Each object's kind, name, namespace and what was done (created, patched,
    unchanged).
  returned: success
  type: list
  elements: dict
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
