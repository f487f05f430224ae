#!/usr/bin/python
"""Ansible module: give an ECR image a new tag by copying its manifest; no layer moves."""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ecr_retag
short_description: Tag an ECR image by copying its manifest (batch_get_image, put_image)
options:
  repository: {type: str, required: true}
  source_tag: {type: str, required: true}
  target_tag: {type: str, required: true}
  expect_digest: {type: str, description: "the digest that was approved: fail if the source tag points elsewhere now"}
  region: {type: str}
  endpoint_url: {type: str}
"""

MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]


def _image(ecr, repository, tag):
    got = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}],
                              acceptedMediaTypes=MEDIA_TYPES)
    return got["images"][0] if got.get("images") else None


def main():
    module = AnsibleModule(
        argument_spec={"repository": {"type": "str", "required": True},
                       "source_tag": {"type": "str", "required": True},
                       "target_tag": {"type": "str", "required": True},
                       "expect_digest": {"type": "str"},
                       "region": {"type": "str"},
                       "endpoint_url": {"type": "str"}},
        supports_check_mode=True)
    import boto3

    p = module.params
    ecr = boto3.client("ecr", region_name=p["region"] or None,
                       endpoint_url=p["endpoint_url"] or None)
    repo, source_tag, target_tag = p["repository"], p["source_tag"], p["target_tag"]
    source = _image(ecr, repo, source_tag)
    if source is None:
        module.fail_json(msg=f"image {repo}:{source_tag} not found in ECR")
    digest = source["imageId"]["imageDigest"]
    expected = p["expect_digest"]
    if expected and digest != expected:  # the tag moved since the approval: deploy nothing
        module.fail_json(msg=f"image {repo}:{source_tag} is now {digest}, not the approved "
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
            module.fail_json(msg=f"tag {repo}:{target_tag} already points to "
                                 f"{target['imageId']['imageDigest']}, not {digest}: "
                                 "tags are immutable, refusing to move it", **result)
        module.exit_json(changed=False, copied=False, **result)
    if not module.check_mode:
        kwargs = {"repositoryName": repo, "imageManifest": source["imageManifest"],
                  "imageTag": target_tag}
        if source.get("imageManifestMediaType"):
            kwargs["imageManifestMediaType"] = source["imageManifestMediaType"]
        put = ecr.put_image(**kwargs)
        if put["image"]["imageId"]["imageDigest"] != digest:
            module.fail_json(msg="ECR stored the copy under another digest", **result)
    module.exit_json(changed=True, copied=not module.check_mode, **result)


if __name__ == "__main__":
    main()
