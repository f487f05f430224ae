"""ansible-doc's page for runbook.platform.verify_window. The task runs as the action plugin of
the same name (plugins/action/verify_window.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: verify_window
short_description: Watch a deployment for a verification window
description:
  - Every O(interval) seconds for O(seconds), the rollout must be complete and available, no
    pod of the deployment may restart, and every HTTP check must answer with its expected
    status. The first sample that fails ends the window with what was seen.
  - The window is measured on the wall clock, unless the kubeconfig's cluster names a clock
    of its own on this machine (the sandbox's C(runbook.sandbox/clock) extension).
  - In check mode it takes one sample.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.kube, runbook.platform.pass_on]
options:
  namespace:
    description: The deployment's namespace.
    type: str
    required: true
  deployment:
    description: The deployment's name.
    type: str
    required: true
  seconds:
    description: How long the window lasts.
    type: float
    required: true
  interval:
    description: Seconds between two samples.
    type: float
    default: 5
  checks:
    description: HTTP checks, each a dict of C(name), C(url) and C(status) (default 200).
    type: list
    elements: dict
    default: []
  image:
    description: The image the deployment must keep running.
    type: str
"""

EXAMPLES = r"""
- name: Watch the deployment
  runbook.platform.verify_window:
    namespace: quikapp-live
    deployment: live-quikapp-api
    seconds: 300
    checks:
      - {name: health, url: "https://quikapp.example/healthz", status: 200}
    pass_on: [summary]
"""

RETURN = r"""
samples: {description: The samples taken., returned: always, type: int}
seconds: {description: How long the window lasted., returned: success, type: float}
summary: {description: The window's outcome, as text., returned: success, type: str}
problems: {description: What the failing sample saw., returned: failure, type: list, elements: str}
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
