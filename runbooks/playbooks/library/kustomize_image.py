#!/usr/bin/python
"""Ansible module: set an image's newName/newTag in a kustomization (``kustomize edit set
image`` without needing the kustomize binary)."""

from __future__ import annotations

import os

import yaml
from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: kustomize_image
short_description: Set images[].newName and newTag in an overlay's kustomization.yaml
options:
  path: {type: path, required: true, description: overlay folder}
  name: {type: str, required: true, description: image name as written in the base}
  new_name: {type: str, required: true}
  new_tag: {type: str, required: true}
"""


class _IndentedLists(yaml.SafeDumper):
    """Write lists indented under their key, as kustomization files usually are."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True},
                       "name": {"type": "str", "required": True},
                       "new_name": {"type": "str", "required": True},
                       "new_tag": {"type": "str", "required": True}},
        supports_check_mode=True)
    p = module.params
    file = next((os.path.join(p["path"], f) for f in
                 ("kustomization.yaml", "kustomization.yml", "Kustomization")
                 if os.path.isfile(os.path.join(p["path"], f))), None)
    if file is None:
        module.fail_json(msg=f"no kustomization in {p['path']}")
    with open(file) as fh:
        before = fh.read()
    data = yaml.safe_load(before) or {}
    images = data.setdefault("images", [])
    entry = next((i for i in images if i.get("name") == p["name"]), None)
    if entry is None:
        entry = {"name": p["name"]}
        images.append(entry)
    old = (entry.get("newName"), entry.get("newTag"))
    entry["newName"], entry["newTag"] = p["new_name"], p["new_tag"]
    result = {"file": file, "image": f"{p['new_name']}:{p['new_tag']}",
              "previous": f"{old[0]}:{old[1]}" if old[1] else None}
    if old == (p["new_name"], p["new_tag"]):
        module.exit_json(changed=False, **result)
    after = yaml.dump(data, Dumper=_IndentedLists, sort_keys=False)
    if not module.check_mode:
        tmp = file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(after)
        os.replace(tmp, file)
    module.exit_json(changed=True, diff={"before": before, "after": after,
                                         "before_header": file, "after_header": file},
                     **result)


if __name__ == "__main__":
    main()
