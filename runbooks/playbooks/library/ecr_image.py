#!/usr/bin/python
"""Ansible module: read an ECR image's digest by its tag. Read-only: runs in check mode too,
so a plan shows (and binds) the digest a run would deploy."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ecr_image
short_description: The digest an ECR tag points to (describe_images)
options:
  repository: {type: str, required: true}
  tag: {type: str, required: true}
  region: {type: str}
  endpoint_url: {type: str}
  missing_ok: {type: bool, default: false, description: "a tag not in ECR is found=false, not a failure"}
"""


def main():
    module = AnsibleModule(
        argument_spec={"repository": {"type": "str", "required": True},
                       "tag": {"type": "str", "required": True},
                       "region": {"type": "str"},
                       "endpoint_url": {"type": "str"},
                       "missing_ok": {"type": "bool", "default": False}},
        supports_check_mode=True)
    import boto3
    from botocore.exceptions import ClientError

    p = module.params
    ecr = boto3.client("ecr", region_name=p["region"] or None,
                       endpoint_url=p["endpoint_url"] or None)
    try:
        found = ecr.describe_images(repositoryName=p["repository"],
                                    imageIds=[{"imageTag": p["tag"]}])["imageDetails"]
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise
        found = []
    if not found and p["missing_ok"]:
        module.exit_json(changed=False, repository=p["repository"], tag=p["tag"], found=False,
                         digest="")
    if not found:
        module.fail_json(msg=f"image {p['repository']}:{p['tag']} not found in ECR")
    module.exit_json(changed=False, repository=p["repository"], tag=p["tag"], found=True,
                     digest=found[0]["imageDigest"])


if __name__ == "__main__":
    main()
