"""The option every plugin of runbook.platform takes (module_utils/runbook_action.py's
PASS_ON)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  pass_on:
    description:
      - Names of this task's results to pass on as the runbook step's outputs, as an
        C(ansible.builtin.set_stats) task after it would (C(per_host=false), aggregated),
        without the task.
      - A name the plugin has no result for fails the task and lists the ones it has.
    type: list
    elements: str
    default: []
"""
