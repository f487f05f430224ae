"""``ansible``: run a playbook through ansible-runner, streaming task events as they happen.

During a plan the playbook runs in check+diff mode. The runner's artifacts stay under the
run's folder; each task's result becomes part of the step's registered result.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ansible_runner

from engine.errors import StepFailed
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext

MAX_MESSAGE = 400
_TASK_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    playbook = Path(str(spec["playbook"]))
    if not playbook.is_absolute():
        playbook = (ctx.runbook_dir / playbook).resolve()
    if ctx.dry_run and spec.get("check_mode") == "skip":
        return Outcome("would-run", message=f"ansible-playbook {playbook.name}")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    _put_ansible_on_path()
    results: dict[str, Any] = {}
    failures: list[str] = []

    def on_event(event: dict[str, Any]) -> bool:
        status = _TASK_EVENTS.get(event.get("event", ""))
        if status is None:
            return True
        data = event.get("event_data", {})
        res = data.get("res", {}) or {}
        task = data.get("task", "")
        changed = " (changed)" if res.get("changed") and status == "ok" else ""
        ctx.emit(f"{status}{changed}: {task} [{data.get('host', '')}]")
        if ctx.dry_run and res.get("diff"):
            for diff in res["diff"] if isinstance(res["diff"], list) else [res["diff"]]:
                for line in str(diff.get("prepared", "") if isinstance(diff, dict) else diff)\
                        .splitlines():
                    ctx.emit(f"    {line}")
        if status in ("failed", "unreachable") and not data.get("ignore_errors"):
            failures.append(f"{task}: {res.get('msg', status)}")
        results[task] = res
        return True

    runner = ansible_runner.run(
        private_data_dir=str(ctx.workdir),
        playbook=str(playbook),
        inventory=_inventory(ctx, spec),
        extravars=dict(spec.get("extravars") or {}),
        cmdline="--check --diff" if ctx.dry_run else None,
        envvars=_envvars(ctx.workdir),
        project_dir=os.getcwd(),
        event_handler=on_event,
        quiet=True,
        suppress_env_files=True,
        timeout=spec.get("timeout"),
    )
    _scrub(ctx.workdir, ctx.redact)
    result = {"rc": runner.rc, "status": runner.status, "stats": runner.stats or {},
              "results": results,
              "changed": any(r.get("changed") for r in results.values())}
    if runner.status == "timeout":
        raise StepFailed(f"playbook {playbook.name} timed out after {spec['timeout']} s", result)
    if runner.rc != 0:
        why = failures[-1] if failures else f"ansible-playbook exited with {runner.rc}"
        if len(why) > MAX_MESSAGE:  # the whole text stays in the result and the artifacts
            why = why[:MAX_MESSAGE] + "…"
        raise StepFailed(f"playbook {playbook.name}: {why}", result)
    summary = (results.get("Summary") or {}).get("msg")
    return Outcome("checked" if ctx.dry_run else "ok", result,
                   message=summary if isinstance(summary, str) else "")


def _scrub(folder: Path, redact: Any) -> None:
    """ansible-runner writes the environment and extra vars into its artifacts: mask the run's
    secrets there too."""
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        masked = redact(text)
        if masked != text:
            path.write_text(masked)


def _inventory(ctx: StepContext, spec: Any) -> str:
    if spec.get("inventory"):
        return str(spec["inventory"])
    path = ctx.workdir / "localhost.ini"
    path.write_text("localhost ansible_connection=local "
                    f"ansible_python_interpreter={sys.executable}\n")
    return str(path)


def _put_ansible_on_path() -> None:
    # ansible-runner looks ansible-playbook up on this process's PATH: use the one installed
    # beside this interpreter, whatever PATH the user has.
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if here not in path.split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + path


def _envvars(workdir: Path) -> dict[str, str]:
    home = workdir / ".ansible"
    return {
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
