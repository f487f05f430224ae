"""ansible-doc's page for runbook.platform.overlay_commit. The task runs as the action plugin of
the same name (plugins/action/overlay_commit.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_commit
short_description: Commit an overlay folder's uncommitted change
description:
  - Commits what changed in the overlay's folder when it is in a git repository. A re-run
    after a crash between the edit and the commit finds the change and commits it; with
    nothing to commit it does nothing; outside git it does nothing.
  - In check mode it says what it would commit and commits nothing.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.pass_on]
options:
  path:
    description: The overlay's folder.
    type: path
    required: true
  message:
    description: The commit's message.
    type: str
    required: true
  user:
    description: The commit's author name.
    type: str
    default: runbook
  email:
    description: The commit's author email.
    type: str
    default: runbook@localhost
requirements:
  - git
"""

EXAMPLES = r"""
- name: Commit the overlay change when the overlay is in git
  runbook.platform.overlay_commit:
    path: k8s/overlays/live
    message: "live: quikapp-api 1.4.2"
"""

RETURN = r"""
in_git: {description: Whether the folder is in a git work tree., returned: always, type: bool}
files:
  description: The folder's C(git status --porcelain) lines.
  returned: always
  type: list
  elements: str
committed:
  description: Whether a commit was made (never in check mode).
  returned: always
  type: bool
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
