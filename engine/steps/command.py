"""``command``: run an argv list; its rc, stdout and stderr become the step's result."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import proc
from engine.errors import StepFailed
from engine.model import Outcome

if TYPE_CHECKING:
    from engine.steps import StepContext


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    argv = argv_of(spec["argv"])
    if ctx.dry_run and spec.get("check_mode") != "safe":
        return Outcome("would-run", message=shlex.join(argv))
    env_spec = spec.get("env") or {}
    if not isinstance(env_spec, Mapping):
        raise StepFailed(f"env must render to a mapping, got {type(env_spec).__name__}")
    env = {str(k): _env_value(v) for k, v in env_spec.items()}
    done = proc.run(argv, cwd=spec.get("cwd"), env=env, timeout=spec.get("timeout"),
                    stdin=spec.get("stdin"), run_id=ctx.run_id, emit=ctx.emit)
    result = {"rc": done.rc, "stdout": done.stdout, "stderr": done.stderr,
              "stdout_lines": done.stdout.splitlines()}
    if done.timed_out:
        raise StepFailed(f"timed out after {spec['timeout']} s: {shlex.join(argv)}", result)
    if done.rc != 0:
        last = done.stderr.strip().splitlines()[-1:] or done.stdout.strip().splitlines()[-1:]
        detail = f": {last[0]}" if last else ""
        raise StepFailed(f"{argv[0]} exited with {done.rc}{detail}", result)
    status = "checked" if ctx.dry_run else "ok"
    return Outcome(status, result)


def argv_of(value: Any) -> list[str]:
    """An argv list; a template must render to a list, a string is never split."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise StepFailed(f"argv must be a non-empty list, got {value!r}")
    return [str(a) for a in value]


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
