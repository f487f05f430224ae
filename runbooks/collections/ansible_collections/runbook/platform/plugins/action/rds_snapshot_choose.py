"""Action plugin: choose an RDS snapshot of an environment's instance (by id, or the latest)
and say how much data a restore from it loses.

Options: instance (required: the environment's DB instance); snapshot_id, or latest; region,
endpoint_url. Returns problem, snapshot (id, instance, created, engine, type), window_seconds,
summary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    RunbookAction,
    aws,
)


def _human(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    return " ".join([*parts, f"{hours} h {mins:02d} min"])


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "instance": {"type": "str", "required": True},
        "snapshot_id": {"type": "str"},
        "latest": {"type": "bool", "default": False},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        rds = aws("rds", p["region"], p["endpoint_url"])
        problem = None
        snapshot = None
        if p["snapshot_id"]:
            try:
                found = rds.describe_db_snapshots(DBSnapshotIdentifier=p["snapshot_id"])
                snapshot = found["DBSnapshots"][0]
            except ClientError as err:
                if err.response["Error"]["Code"] != "DBSnapshotNotFound":
                    raise
                problem = f"snapshot {p['snapshot_id']} does not exist"
            if snapshot and snapshot["DBInstanceIdentifier"] != p["instance"]:
                problem = (f"snapshot {p['snapshot_id']} is of "
                           f"{snapshot['DBInstanceIdentifier']}, not of {p['instance']}")
        else:
            found = rds.describe_db_snapshots(DBInstanceIdentifier=p["instance"])["DBSnapshots"]
            ready = [s for s in found if s.get("Status") == "available"]
            if ready:
                snapshot = max(ready, key=lambda s: s["SnapshotCreateTime"])
            else:
                problem = f"{p['instance']} has no available snapshot"
        if problem or snapshot is None:
            return {"problem": problem, "snapshot": None, "window_seconds": None,
                    "summary": problem}
        created = snapshot["SnapshotCreateTime"]
        window = (datetime.now(UTC) - created).total_seconds()
        chosen = {"id": snapshot["DBSnapshotIdentifier"],
                  "instance": snapshot["DBInstanceIdentifier"],
                  "created": created.isoformat(), "engine": snapshot.get("Engine"),
                  "type": snapshot.get("SnapshotType")}
        return {"problem": None, "snapshot": chosen, "window_seconds": int(window),
                "summary": f"snapshot {chosen['id']} of {chosen['instance']} taken "
                           f"{chosen['created']}; data-loss window: {_human(window)} "
                           "(changes after it are not in the restore)"}
