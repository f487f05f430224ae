"""ansible-doc's page for runbook.platform.k8s_deployment. The task runs as the action plugin of
the same name (plugins/action/k8s_deployment.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_deployment
short_description: Read a deployment and wait for its rollout
description:
  - Reads one deployment, as M(kubernetes.core.k8s_info) does (the same RV(resources)
    result), without a module process.
  - With O(wait), waits until its rollout is complete by watching the deployment (a GET,
    then a watch from its resourceVersion filtered to its name); a server that refuses to
    watch is polled every O(wait_sleep) seconds instead. A rollout is complete when the
    controller has seen the latest spec and every replica is updated and available.
  - With O(container), the deployment must exist and have that container, and the result
    says what it runs; with O(image) as well, the container must run that image (after the
    wait, when there is one) and every replica must be updated and available.
  - O(name) (with O(container) and O(image)) may map service names to one deployment each
    (a release of several services); each is read and, with O(wait), each given an O(image)
    waited for under one deadline, the others only read. The results map the names to
    theirs; a rollout that does not complete fails the task by its service's name, with
    what the others run.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.kube, runbook.platform.pass_on]
options:
  namespace:
    description: The deployment's namespace.
    type: str
    required: true
  name:
    description: The deployment's name.
    type: raw
    required: true
  wait:
    description: Wait until the rollout is complete.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the rollout; the task fails after them.
    type: int
    default: 120
  wait_sleep:
    description: Seconds between two reads when the server cannot watch.
    type: float
    default: 1
  container:
    description: The container whose image the result reports.
    type: raw
  image:
    description: The image O(container) must run; requires O(container).
    type: raw
"""

EXAMPLES = r"""
- name: Wait until the rollout is complete and runs the expected image
  runbook.platform.k8s_deployment:
    namespace: quikapp-live
    name: live-quikapp-api
    container: api
    image: registry.example/quikapp/api:1.4.2
    wait: true
    wait_timeout: 600
    pass_on: [image, revision, replicas]
"""

RETURN = r"""
resources:
  description: The deployment as the API gives it; empty when there is none.
  returned: always
  type: list
  elements: dict
complete: {description: Whether its rollout is complete., returned: always, type: bool}
rollout:
  description: What a playbook checks of it (images by container, revision, replicas,
    updated, available, generation, observed).
  returned: always
  type: dict
wait_method:
  description: How the wait was done (watch or poll).
  returned: with O(wait)
  type: str
image: {description: The image O(container) runs., returned: with O(container), type: str}
repository: {description: That image's name., returned: with O(container), type: str}
tag:
  description: That image's tag
  V('') when it has none.: None
  returned: with O(container)
  type: str
revision: {description: The deployment's revision., returned: with O(container), type: str}
replicas: {description: Its available replicas., returned: with O(container), type: int}
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
