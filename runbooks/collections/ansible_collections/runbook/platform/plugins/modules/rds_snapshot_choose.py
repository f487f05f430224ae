"""ansible-doc's page for runbook.platform.rds_snapshot_choose. The task runs as the action
plugin of the same name (plugins/action/rds_snapshot_choose.py) on the controller: this
module never runs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rds_snapshot_choose
short_description: Choose an RDS snapshot and say how much data a restore from it loses
description:
  - Chooses a snapshot of the instance, by its id or the latest available one, and says how
    long ago it was taken (the data-loss window of a restore from it). A snapshot of another
    instance, or none, is a RV(problem), not a failure.
version_added: 0.1.0
author: runbook maintainers
extends_documentation_fragment: [runbook.platform.aws, runbook.platform.pass_on]
options:
  instance:
    description: The environment's DB instance.
    type: str
    required: true
  snapshot_id:
    description: The snapshot to restore.
    type: str
  latest:
    description: Without O(snapshot_id), choose the instance's latest available snapshot.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Choose the snapshot
  runbook.platform.rds_snapshot_choose:
    instance: quikapp-live
    latest: true
    pass_on: [snapshot, problem, window_seconds, summary]
  check_mode: false
"""

RETURN = r"""
snapshot:
  description: The snapshot chosen (id
  instance: None
  created: None
  engine: None
  type); null with a problem.: None
  returned: always
  type: dict
problem: {description: Why none was chosen; null when one was., returned: always, type: str}
window_seconds: {description: Seconds since the snapshot was taken., returned: always, type: int}
summary: {description: The choice and its data-loss window, as text., returned: always, type: str}
"""


if __name__ == "__main__":
    raise SystemExit("the action plugin of the same name runs this task, never this module")
