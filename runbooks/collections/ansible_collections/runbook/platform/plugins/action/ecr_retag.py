"""Action plugin: give an ECR image a new tag by copying its manifest; no layer moves.

Options: repository, source_tag, target_tag (required); expect_digest (the digest that was
approved: fail if the source tag points elsewhere now); region, endpoint_url. Returns digest,
source_tag, target_tag, repository, layers, image_bytes, manifest_bytes, copied, and the
tag's diff when it is new.

``target_tag`` (and the others) may map service names to one each: every service's source is
read and checked against its approved digest, and every target tag against what it names,
before any tag is copied; a service whose image moved or whose tag names another image fails
the task, by name, and nothing is copied. Each result then maps the service names to theirs.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
    aws,
    named,
    per_service,
    services_of,
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
        "repository": {"type": "raw", "required": True},
        "source_tag": {"type": "raw", "required": True},
        "target_tag": {"type": "raw", "required": True},
        "expect_digest": {"type": "raw"},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        ecr = aws("ecr", p["region"], p["endpoint_url"])
        runs = services_of(p, "target_tag",
                           ("repository", "source_tag", "target_tag", "expect_digest"))
        # Everything is read and checked before anything is copied.
        checked = [(name, *self._check(ecr, name, mine)) for name, mine in runs]
        problems = [problem for _, _, _, problem in checked if problem]
        if problems:
            first = next(extra for _, _, extra, problem in checked if problem)
            raise Failed("; ".join(problems), **(first if len(checked) == 1 else {}))
        done = [(name, self._copy(ecr, source, result, check_mode))
                for name, source, result, _ in checked]
        out = {key: per_service([(name, res[key]) for name, res in done])
               for key in ("digest", "source_tag", "target_tag", "repository", "layers",
                           "image_bytes", "manifest_bytes", "copied")}
        diffs = [res["diff"] for _, res in done if "diff" in res]
        return {"changed": any(res["changed"] for _, res in done), **out,
                **({"diff": diffs[0] if len(runs) == 1 else diffs} if diffs else {})}

    @staticmethod
    def _check(ecr: Any, name: str | None, p: dict[str, Any]
               ) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
        """(the source image, the result so far, what refuses the copy: '' when nothing)"""
        repo, source_tag, target_tag = p["repository"], p["source_tag"], p["target_tag"]
        source = _image(ecr, repo, source_tag)
        if source is None:
            return None, {}, named(name, f"image {repo}:{source_tag} not found in ECR")
        digest = source["imageId"]["imageDigest"]
        expected = p["expect_digest"]
        if expected and digest != expected:  # the tag moved since the approval: deploy nothing
            return source, {"digest": digest, "expected_digest": expected}, named(
                name, f"image {repo}:{source_tag} is now {digest}, not the approved "
                      f"{expected}: refusing to deploy it")
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
                return source, result, named(
                    name, f"tag {repo}:{target_tag} already points to "
                          f"{target['imageId']['imageDigest']}, not {digest}: "
                          "tags are immutable, refusing to move it")
            return None, {"changed": False, "copied": False, **result}, ""
        return source, result, ""

    @staticmethod
    def _copy(ecr: Any, source: dict[str, Any] | None, result: dict[str, Any],
              check_mode: bool) -> dict[str, Any]:
        if source is None:  # the target tag is there already, on the same image
            return result
        repo, digest = result["repository"], result["digest"]
        source_tag, target_tag = result["source_tag"], result["target_tag"]
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
