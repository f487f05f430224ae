"""Action plugin: read an ECR image's digest by its tag. Read-only: runs in check mode too,
so a plan shows (and binds) the digest a run would deploy.

Options: repository, tag (required); region, endpoint_url; missing_ok (a tag not in ECR is
found=false, not a failure). Returns repository, tag, found, digest. ``tag`` (and
``repository``) may map service names to one each: then each service's image is read, and each
result maps the service names to theirs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
    aws,
    named,
    per_service,
    services_of,
)


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "repository": {"type": "raw", "required": True},
        "tag": {"type": "raw", "required": True},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
        "missing_ok": {"type": "bool", "default": False},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        ecr = aws("ecr", p["region"], p["endpoint_url"])
        found = [(name, self._read(ecr, name, str(mine["repository"]), str(mine["tag"]),
                                   p["missing_ok"]))
                 for name, mine in services_of(p, "tag", ("repository", "tag"))]
        return {key: per_service([(name, res[key]) for name, res in found])
                for key in ("repository", "tag", "found", "digest")}

    @staticmethod
    def _read(ecr: Any, name: str | None, repository: str, tag: str,
              missing_ok: bool) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            found = ecr.describe_images(repositoryName=repository,
                                        imageIds=[{"imageTag": tag}])["imageDetails"]
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise
            found = []
        if not found and missing_ok:
            return {"repository": repository, "tag": tag, "found": False, "digest": ""}
        if not found:
            raise Failed(named(name, f"image {repository}:{tag} not found in ECR"))
        return {"repository": repository, "tag": tag, "found": True,
                "digest": found[0]["imageDigest"]}
