"""Action plugin: read an ECR image's digest by its tag. Read-only: runs in check mode too,
so a plan shows (and binds) the digest a run would deploy.

Options: repository, tag (required); region, endpoint_url; missing_ok (a tag not in ECR is
found=false, not a failure). Returns repository, tag, found, digest.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
    aws,
)


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "repository": {"type": "str", "required": True},
        "tag": {"type": "str", "required": True},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
        "missing_ok": {"type": "bool", "default": False},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        ecr = aws("ecr", p["region"], p["endpoint_url"])
        try:
            found = ecr.describe_images(repositoryName=p["repository"],
                                        imageIds=[{"imageTag": p["tag"]}])["imageDetails"]
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise
            found = []
        if not found and p["missing_ok"]:
            return {"repository": p["repository"], "tag": p["tag"], "found": False, "digest": ""}
        if not found:
            raise Failed(f"image {p['repository']}:{p['tag']} not found in ECR")
        return {"repository": p["repository"], "tag": p["tag"], "found": True,
                "digest": found[0]["imageDigest"]}
