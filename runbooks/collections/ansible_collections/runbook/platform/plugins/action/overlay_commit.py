"""Action plugin: commit an overlay folder's uncommitted change, when the overlay is in a git
repository. A re-run after a crash between the edit and the commit finds the change and
commits it; with nothing to commit it does nothing. In check mode it says what it would
commit and commits nothing.

Options: path (the overlay folder), message (required); user, email (the commit's author,
default runbook <runbook@localhost>). Returns in_git, files (git status --porcelain of the
folder), committed.
"""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import (
    Failed,
    RunbookAction,
)


def _git(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                          check=False)


class ActionModule(RunbookAction):
    SPEC: ClassVar[dict[str, Any]] = {
        "path": {"type": "path", "required": True},
        "message": {"type": "str", "required": True},
        "user": {"type": "str", "default": "runbook"},
        "email": {"type": "str", "default": "runbook@localhost"},
    }

    def act(self, p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
        if _git(p["path"], "rev-parse", "--is-inside-work-tree").returncode != 0:
            return {"in_git": False, "files": [], "committed": False}
        status = _git(p["path"], "status", "--porcelain", "--", ".")
        if status.returncode != 0:
            raise Failed(f"git status in {p['path']} failed: {status.stderr.strip()}")
        files = status.stdout.splitlines()
        if not files:
            return {"in_git": True, "files": [], "committed": False}
        result = {"changed": True, "in_git": True, "files": files, "committed": not check_mode,
                  "diff": {"prepared": f"commit {p['message']!r}:\n" + "\n".join(files)}}
        if check_mode:
            return result
        done = _git(p["path"], "-c", f"user.name={p['user']}", "-c", f"user.email={p['email']}",
                    "commit", "-q", "-m", p["message"], "--", ".")
        if done.returncode != 0:
            raise Failed(f"git commit in {p['path']} failed: "
                         f"{(done.stderr or done.stdout).strip()}", **result)
        return result
