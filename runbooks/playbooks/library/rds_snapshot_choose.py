#!/usr/bin/python
"""Ansible module: choose an RDS snapshot of an environment's instance (by id, or the latest)
and say how much data a restore from it loses."""

from __future__ import annotations

from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: rds_snapshot_choose
short_description: Pick an RDS snapshot and compute the data-loss window
options:
  instance: {type: str, required: true, description: the environment's DB instance}
  snapshot_id: {type: str}
  latest: {type: bool, default: false}
  region: {type: str}
  endpoint_url: {type: str}
"""


def _human(seconds):
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    return " ".join([*parts, f"{hours} h {mins:02d} min"])


def main():
    module = AnsibleModule(
        argument_spec={"instance": {"type": "str", "required": True},
                       "snapshot_id": {"type": "str"},
                       "latest": {"type": "bool", "default": False},
                       "region": {"type": "str"}, "endpoint_url": {"type": "str"}},
        supports_check_mode=True)
    import boto3
    from botocore.exceptions import ClientError

    p = module.params
    rds = boto3.client("rds", region_name=p["region"] or None,
                       endpoint_url=p["endpoint_url"] or None)
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
            problem = (f"snapshot {p['snapshot_id']} is of {snapshot['DBInstanceIdentifier']}, "
                       f"not of {p['instance']}")
    else:
        found = rds.describe_db_snapshots(DBInstanceIdentifier=p["instance"])["DBSnapshots"]
        ready = [s for s in found if s.get("Status") == "available"]
        if ready:
            snapshot = max(ready, key=lambda s: s["SnapshotCreateTime"])
        else:
            problem = f"{p['instance']} has no available snapshot"
    if problem or snapshot is None:
        module.exit_json(changed=False, problem=problem, snapshot=None, summary=problem)
    created = snapshot["SnapshotCreateTime"]
    window = (datetime.now(timezone.utc) - created).total_seconds()
    chosen = {"id": snapshot["DBSnapshotIdentifier"], "instance": snapshot["DBInstanceIdentifier"],
              "created": created.isoformat(), "engine": snapshot.get("Engine"),
              "type": snapshot.get("SnapshotType")}
    module.exit_json(
        changed=False, problem=None, snapshot=chosen, window_seconds=int(window),
        summary=f"snapshot {chosen['id']} of {chosen['instance']} taken {chosen['created']}; "
                f"data-loss window: {_human(window)} (changes after it are not in the restore)")


if __name__ == "__main__":
    main()
