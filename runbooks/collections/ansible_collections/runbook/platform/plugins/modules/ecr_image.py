"""ansible-doc's page for runbook.platform.ecr_image. The task runs as the action plugin of
the same name (plugins/action/ecr_image.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_image
short_description: Read the digest an ECR tag points to
description:
  - Reads an ECR image's digest by its tag. Read-only, so it runs in check mode too and a
    plan shows (and binds) the digest a run would deploy.
  - O(tag) (and O(repository)) may map service names to one each (a release of several
    services); each service's image is read, and each result maps the names to theirs.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.aws, runbook.platform.pass_on]
options:
  repository:
    description: The ECR repository.
    type: raw
    required: true
  tag:
    description: The image's tag.
    type: raw
    required: true
  missing_ok:
    description: A tag not in ECR is a result with O(found=false), not a failure.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Read the tag
  runbook.platform.ecr_image:
    repository: quikapp/api
    tag: 1.4.2
    missing_ok: true
    pass_on: [digest, found]
  check_mode: false
"""

RETURN = r"""
repository: {description: The repository read., returned: always, type: str}
tag: {description: The tag read., returned: always, type: str}
found: {description: Whether ECR has the tag., returned: always, type: bool}
digest:
  description: The image's digest, V('') when the tag is not found.
  returned: always
  type: str
  sample: sha256:3b1f0c...
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
