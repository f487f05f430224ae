"""ansible-doc's page for runbook.platform.k8s_rollout. The task runs as the action plugin of
the same name (plugins/action/k8s_rollout.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_rollout
short_description: A deployment's rollout history, and undo to a chosen ReplicaSet
description:
  - With O(action=history), reads the deployment's revisions and chooses the one to go back
    to.
  - With O(action=undo), puts back the pod template of the ReplicaSet with the
    pod-template-hash O(to_hash) (not a revision number, which a rollback moves on, so a
    re-run after a crash finds the same target). Undoing to the template the deployment
    runs already changes nothing; the diff shows the image before and after.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.kube, runbook.platform.pass_on]
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [history, undo]
  namespace:
    description: The deployment's namespace.
    type: str
    required: true
  deployment:
    description: The deployment's name.
    type: str
    required: true
  to_revision:
    description: With O(action=history), the revision to go back to; V(0) is the previous one.
    type: int
    default: 0
  choose:
    description: With O(action=history), V(running) makes the target what runs now (what a
      change that fails goes back to).
    type: str
    choices: [previous, running]
    default: previous
  to_hash:
    description: The pod-template-hash of the ReplicaSet to go back to; required with
      O(action=undo).
    type: str
"""

EXAMPLES = r"""
- name: Read the history
  runbook.platform.k8s_rollout:
    action: history
    namespace: quikapp-live
    deployment: live-quikapp-api
    pass_on: [target, problem, summary]
  check_mode: false

- name: Undo the rollout
  runbook.platform.k8s_rollout:
    action: undo
    namespace: quikapp-live
    deployment: live-quikapp-api
    to_hash: 5d8f7c9b6
"""

RETURN = r"""
current: {description: The revision running now., returned: history, type: dict}
target:
  description: The revision to go back to (revision, hash, image, created, current, name);
    null when there is a problem.
  returned: history
  type: dict
problem:
  description: Why there is no target; null when there is one.
  returned: history
  type: str
revisions:
  description: Every revision
  newest first.: None
  returned: history
  type: list
  elements: dict
summary: {description: The history as text, and the choice., returned: history, type: str}
from_revision:
  description: The revision before the undo.
  returned: undo that changed it
  type: int
to_image: {description: The image after the undo., returned: undo that changed it, type: str}
to_hash: {description: The template hash after the undo., returned: undo that changed it, type: str}
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
