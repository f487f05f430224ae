"""Action plugin: set an image's newName/newTag in a kustomization (``kustomize edit set
image`` without needing the kustomize binary). Given a whole image reference (``image``, as a
deployment or ReplicaSet holds it), it is split into newName and newTag or digest, so that the
overlay renders exactly that reference.

Options: path (the overlay folder), name (the image name as written in the base), both
required; new_name with new_tag, or image (NAME:TAG, NAME@DIGEST or NAME:TAG@DIGEST).
Returns file, image, previous, and the file's diff when it changes.

``new_tag`` or ``image`` (and the others) may map service names to one each: every service's
image is set in one write of the file, with one diff; ``image`` and ``previous`` then map the
service names to theirs. An empty mapping changes nothing.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import yaml
from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
    per_service,
    services_of,
)


class _IndentedLists(yaml.SafeDumper):
    """Write lists indented under their key, as kustomization files usually are."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def split(image: str) -> tuple[str, str | None, str | None]:
    """NAME[:TAG][@DIGEST] → (name, tag, digest); a ':' before the last '/' is a port."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:], digest or None
    return rest, None, digest or None


def _reference(name: str | None, tag: str | None, digest: str | None) -> str:
    return (name or "") + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "path": {"type": "path", "required": True},
        "name": {"type": "raw", "required": True},
        "new_name": {"type": "raw"},
        "new_tag": {"type": "raw"},
        "image": {"type": "raw"},
    }
    RULES: ClassVar[dict[str, Any]] = {
        "required_one_of": [["image", "new_tag"]],
        "mutually_exclusive": [["image", "new_tag"], ["image", "new_name"]],
        "required_together": [["new_name", "new_tag"]],
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        runs = services_of(p, "image" if p["image"] is not None else "new_tag",
                           ("name", "new_name", "new_tag", "image"))
        file = next((os.path.join(p["path"], f) for f in
                     ("kustomization.yaml", "kustomization.yml", "Kustomization")
                     if os.path.isfile(os.path.join(p["path"], f))), None)
        if file is None:
            raise Failed(f"no kustomization in {p['path']}")
        with open(file) as fh:
            before = fh.read()
        data = yaml.safe_load(before) or {}
        images = data.setdefault("images", [])
        set_images, previous, changed = [], [], False
        for service, mine in runs:
            if mine["name"] is None:
                raise Failed(f"{service}: no image name given for it in name")
            new_name: str | None
            new_tag: str | None
            if mine["image"]:
                new_name, new_tag, digest = split(str(mine["image"]))
            else:
                new_name = None if mine["new_name"] is None else str(mine["new_name"])
                new_tag = None if mine["new_tag"] is None else str(mine["new_tag"])
                digest = None
            entry = next((i for i in images if i.get("name") == mine["name"]), None)
            if entry is None:
                entry = {"name": mine["name"]}
                images.append(entry)
            old = (entry.get("newName"), entry.get("newTag"), entry.get("digest"))
            new = (new_name, new_tag, digest)
            for key, value in zip(("newName", "newTag", "digest"), new, strict=True):
                if value is None:
                    entry.pop(key, None)  # a tag left from before would render another image
                else:
                    entry[key] = value
            set_images.append((service, _reference(*new)))
            previous.append((service, _reference(*old) if old[1] or old[2] else None))
            changed = changed or old != new
        result = {"file": file, "image": per_service(set_images),
                  "previous": per_service(previous)}
        if not changed:
            return {"changed": False, **result}
        after = yaml.dump(data, Dumper=_IndentedLists, sort_keys=False)
        if not check_mode:
            tmp = file + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(after)
            os.replace(tmp, file)
        return {"changed": True, "diff": {"before": before, "after": after,
                                          "before_header": file, "after_header": file},
                **result}
