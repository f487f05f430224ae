"""ansible-doc's page for runbook.platform.kustomize_image. The task runs as the action plugin of
the same name (plugins/action/kustomize_image.py) on the controller: this module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kustomize_image
short_description: Set an image's newName and newTag in a kustomization
description:
  - What C(kustomize edit set image) does, without the kustomize binary.
  - Given a whole image reference (O(image), as a deployment or ReplicaSet holds it), it is
    split into newName and newTag or digest, so the overlay renders exactly that reference.
  - In check mode nothing is written and the diff shows the file before and after.
  - O(new_tag) or O(image) (and the others) may map service names to one each (a release of
    several services); every image is set in one write of the file, with one diff, and
    RV(image) and RV(previous) map the names to theirs.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.pass_on]
options:
  path:
    description: The overlay's folder (its kustomization.yaml, kustomization.yml or
      Kustomization).
    type: path
    required: true
  name:
    description: The image's name as the base writes it.
    type: raw
    required: true
  new_name:
    description: The image's new name; with O(new_tag).
    type: raw
  new_tag:
    description: The image's new tag; with O(new_name); not with O(image).
    type: raw
  image:
    description: A whole reference (NAME:TAG, NAME@DIGEST or NAME:TAG@DIGEST), in place of
      O(new_name) and O(new_tag).
    type: raw
"""

EXAMPLES = r"""
- name: Set the image in the overlay
  runbook.platform.kustomize_image:
    path: k8s/overlays/live
    name: quikapp-api
    new_name: registry.example/quikapp/api
    new_tag: 1.4.2
"""

RETURN = r"""
file: {description: The kustomization file., returned: success, type: str}
image: {description: The reference the overlay renders now., returned: success, type: str}
previous:
  description: The reference it rendered before; null when it set none.
  returned: success
  type: str
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
