"""Shell completion, driven as the shell drives it: the `runbook` console script started with
argcomplete's environment, its candidates read from the file it writes them to."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HEADER

RUNBOOK = Path(sys.executable).parent / "runbook"


def candidates(line: str, tmp_path: Path, **env: str) -> list[str]:
    out = tmp_path / "completions"
    proc = subprocess.run([str(RUNBOOK)], capture_output=True, text=True, timeout=60, env={
        **os.environ, **env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "COMP_LINE": line,
        "COMP_POINT": str(len(line))})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [c.strip() for c in out.read_text().split("\n") if c.strip()]


def test_completes_subcommands(tmp_path):
    assert {"status", "approve", "completion"} <= set(candidates("runbook ", tmp_path))
    assert candidates("runbook sta", tmp_path) == ["status"]


def test_completes_runbook_names_and_their_params(tmp_path):
    assert {"promote", "db-restore", "demo"} <= set(candidates("runbook run ", tmp_path))
    params = candidates("runbook plan promote --", tmp_path)
    assert {"--from", "--to", "--tag", "--inventory"} <= set(params)
    assert {"--latest", "--no-latest"} <= set(candidates("runbook run db-restore --", tmp_path))


def test_completes_environments_of_the_inventory(tmp_path):
    envs = candidates("runbook run promote --from qa --to ", tmp_path)
    assert envs == ["dev", "qa", "uat1", "uat2", "uat3", "staging", "live"]
    assert candidates("runbook history --env uat", tmp_path,
                      RUNBOOK_INVENTORY="quikapp") == ["uat1", "uat2", "uat3"]


def test_completes_history_kinds_the_runbooks_record(tmp_path):
    assert candidates("runbook history --kind ", tmp_path) == [
        "db-restore", "db-rollback", "hotfix", "promotion", "rollback"]
    assert candidates("runbook history --kind db-r", tmp_path) == ["db-restore", "db-rollback"]


def test_completes_run_ids(tmp_path, write_runbook):
    path = write_runbook(HEADER + "steps: [{id: a, command: {argv: [echo, hi]}}]\n")
    started = subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--output",
                              "json"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    for command in ("status", "resume", "abort", "approve"):
        offered = candidates(f"runbook {command} ", tmp_path)
        assert [c for c in offered if not c.startswith("-")] == [run_id]
    assert candidates("runbook audit export --run ", tmp_path) == [run_id]
    assert candidates(f"runbook status {run_id[:9]}", tmp_path) == [run_id]


def test_a_broken_state_file_offers_nothing_quietly(tmp_path):
    broken = tmp_path / "state.db"
    broken.write_text("this is not a database")
    offered = candidates("runbook status ", tmp_path, RUNBOOK_STATE=str(broken))
    assert [c for c in offered if not c.startswith("-")] == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_to_source(shell, runbook_cli):
    result = runbook_cli("completion", shell)
    assert result.code == 0 and "runbook" in result.out and "_ARGCOMPLETE" in result.out


def test_the_bash_script_completes_in_bash(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = subprocess.run([str(RUNBOOK), "completion", "bash"], capture_output=True,
                            text=True).stdout
    driver = script + """
COMP_WORDS=(runbook sta); COMP_CWORD=1; COMP_LINE="runbook sta"; COMP_POINT=11
_python_argcomplete runbook sta runbook
printf '%s\\n' "${COMPREPLY[@]}"
"""
    env = {**os.environ, "PATH": f"{RUNBOOK.parent}:{os.environ['PATH']}"}
    proc = subprocess.run([bash, "-c", driver], capture_output=True, text=True, env=env)
    assert proc.stdout.split() == ["status"], proc.stderr
