"""ansible-doc's page for runbook.platform.ecr_retag. The task runs as the action plugin of
the same name (plugins/action/ecr_retag.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_retag
short_description: Give an ECR image a new tag by copying its manifest
description:
  - Copies the manifest the source tag points to under the target tag; no layer moves.
  - A target tag that already points to the same digest changes nothing; one that points
    elsewhere fails the task (tags are immutable).
  - In check mode nothing is copied and the diff shows the new tag.
  - O(target_tag) (and the others) may map service names to one each (a release of several
    services); every source is checked against its approved digest and every target tag
    against what it names before any tag is copied; a service that fails a check fails the
    task by name and nothing is copied. Each result then maps the names to theirs.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.aws, runbook.platform.pass_on]
options:
  repository:
    description: The ECR repository.
    type: raw
    required: true
  source_tag:
    description: The tag of the image to copy.
    type: raw
    required: true
  target_tag:
    description: The new tag.
    type: raw
    required: true
  expect_digest:
    description: The digest that was approved; the task fails if the source tag points
      elsewhere now.
    type: raw
"""

EXAMPLES = r"""
- name: Copy the manifest
  runbook.platform.ecr_retag:
    repository: quikapp/api
    source_tag: 1.4.2
    target_tag: live-1.4.2
    expect_digest: "{{ approved_digest }}"
    pass_on: [digest, manifest_bytes]
"""

RETURN = r"""
digest: {description: The digest both tags point to., returned: success, type: str}
repository: {description: The repository., returned: success, type: str}
source_tag: {description: The tag copied from., returned: success, type: str}
target_tag: {description: The tag copied to., returned: success, type: str}
copied:
  description: Whether a manifest was copied (never in check mode).
  returned: success
  type: bool
layers: {description: The number of the image's layers., returned: success, type: int}
image_bytes:
  description: What pulling and pushing the image would have moved.
  returned: success
  type: int
manifest_bytes: {description: What the copy moved., returned: success, type: int}
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
