"""Action plugin: give an ECR image a new tag by copying its manifest; no layer moves.

Options: repository, source_tag, target_tag (required); expect_digest (the digest that was
approved: fail if the source tag points elsewhere now); region, endpoint_url. Returns digest,
source_tag, target_tag, repository, layers, image_bytes, manifest_bytes, copied, and the
tag's diff when it is new.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
    aws,
)

MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]


def _image(ecr: Any, repository: str, tag: str) -> dict[str, Any] | None:
    got = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                              acceptedMediaTypes=MEDIA_TYPES)
    image: dict[str, Any] | None = got["images"][0] if got.get("images") else None
    return image


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "repository": {"type": "str", "required": True},
        "source_tag": {"type": "str", "required": True},
        "target_tag": {"type": "str", "required": True},
        "expect_digest": {"type": "str"},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        ecr = aws("ecr", p["region"], p["endpoint_url"])
        repo, source_tag, target_tag = p["repository"], p["source_tag"], p["target_tag"]
        source = _image(ecr, repo, source_tag)
        if source is None:
            raise Failed(f"image {repo}:{source_tag} not found in ECR")
        digest = source["imageId"]["imageDigest"]
        expected = p["expect_digest"]
        if expected and digest != expected:  # the tag moved since the approval: deploy nothing
            raise Failed(f"image {repo}:{source_tag} is now {digest}, not the approved "
                         f"{expected}: refusing to deploy it", digest=digest,
                         expected_digest=expected)
        manifest = json.loads(source["imageManifest"])
        layers = manifest.get("layers", [])
        sizes = {"layers": len(layers),
                 "image_bytes": sum(x.get("size", 0) for x in layers)
                 + manifest.get("config", {}).get("size", 0),
                 "manifest_bytes": len(source["imageManifest"].encode())}
        result = {"digest": digest, "source_tag": source_tag, "target_tag": target_tag,
                  "repository": repo, **sizes}
        target = _image(ecr, repo, target_tag)
        if target is not None:
            if target["imageId"]["imageDigest"] != digest:
                raise Failed(f"tag {repo}:{target_tag} already points to "
                             f"{target['imageId']['imageDigest']}, not {digest}: "
                             "tags are immutable, refusing to move it", **result)
            return {"changed": False, "copied": False, **result}
        if not check_mode:
            kwargs = {"repositoryName": repo, "imageManifest": source["imageManifest"],
                      "imageTag": target_tag}
            if source.get("imageManifestMediaType"):
                kwargs["imageManifestMediaType"] = source["imageManifestMediaType"]
            put = ecr.put_image(**kwargs)
            if put["image"]["imageId"]["imageDigest"] != digest:
                raise Failed("ECR stored the copy under another digest", **result)
        where = f"{repo}:{target_tag}"
        return {"changed": True, "copied": not check_mode, **result,
                "diff": {"before": f"{where}: no such tag\n",
                         "after": f"{where}: {digest} (the manifest of {source_tag})\n",
                         "before_header": f"ECR {where}", "after_header": f"ECR {where}"}}
