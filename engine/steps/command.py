"""``command``: run an argv list; its rc, stdout and stderr become the step's result."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed
from engine.language.model import Outcome
from engine.status import StepStatus
from engine.steps.base import StepType
from engine.system import proc

if TYPE_CHECKING:
    from engine.steps.base import StepContext

# Enough to see an error and what led to it; the whole output is in the step's result.
LAST_LINES = 10


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    argv = argv_of(spec["argv"])
    if ctx.dry_run and spec.get("check_mode") != "safe":
        return Outcome(StepStatus.WOULD_RUN, message=shlex.join(argv))
    env_spec = spec.get("env") or {}
    if not isinstance(env_spec, Mapping):
        raise StepFailed(f"env must render to a mapping, got {type(env_spec).__name__}")
    env = {str(k): _env_value(v) for k, v in env_spec.items()}
    done = proc.run(argv, cwd=spec.get("cwd"), env=env, timeout=spec.get("timeout"),
                    stdin=spec.get("stdin"), run_id=ctx.run_id, emit=ctx.emit)
    result = {"rc": done.rc, "stdout": done.stdout, "stderr": done.stderr,
              "stdout_lines": done.stdout.splitlines()}
    if done.timed_out:
        raise StepFailed(ctx.redact(f"timed out after {spec['timeout']} s: {shlex.join(argv)} "
                                    f"in {_where(spec.get('cwd'))}"), result)
    if done.rc != 0:
        raise StepFailed(ctx.redact(failure(argv, spec.get("cwd"), done)), result)
    status = StepStatus.CHECKED if ctx.dry_run else StepStatus.OK
    return Outcome(status, result)


def missing(spec: Mapping[str, Any]) -> str | None:
    """What is missing for a rendered command to start at all (its folder, its program), so a
    run is refused before anything runs rather than failing part-way, holding its lock."""
    try:
        argv = argv_of(spec.get("argv"))
    except StepFailed as exc:
        return str(exc)
    cwd = _where(spec.get("cwd"))
    if not os.path.isdir(cwd):
        return f"its folder {cwd} does not exist"
    program = argv[0]
    if "/" in program:
        found = os.path.join(cwd, program)
        if not (os.path.isfile(found) and os.access(found, os.X_OK)):
            return f"{program} is not an executable file (in {cwd})"
    env = spec.get("env")
    path = str(env["PATH"]) if isinstance(env, Mapping) and "PATH" in env else None
    if "/" not in program and shutil.which(program, path=path) is None:
        return f"{program} is not installed (not found on PATH)"
    return None


def failure(argv: list[str], cwd: str | None, done: proc.Completed) -> str:
    """What the operator needs to act on a failed command without running it again: what
    ran, where, its exit code and the last lines it printed (or that it printed nothing)."""
    head = f"{shlex.join(argv)} exited with {done.rc} in {_where(cwd)}"
    lines = [line for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    if not lines:
        return f"{head}; it printed nothing"
    tail = lines[-LAST_LINES:]
    shown = "\n".join(f"    {line}" for line in tail)
    return f"{head}; its last {'line' if len(tail) == 1 else f'{len(tail)} lines'}:\n{shown}"


def _where(cwd: str | None) -> str:
    return os.path.abspath(cwd or ".")


def argv_of(value: Any) -> list[str]:
    """An argv list; a template must render to a list, a string is never split."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise StepFailed(f"argv must be a non-empty list, got {value!r}")
    return [str(a) for a in value]


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(spec: Mapping[str, Any]) -> list[str]:
    argv = spec["argv"] if isinstance(spec["argv"], list) else [str(spec["argv"])]
    text = "$ " + shlex.join(str(a) for a in argv)
    if spec.get("check_mode") == "safe":
        text += "   (read-only: runs during the plan)"
    return [text]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["argv"],
    "properties": {
        "argv": {"$ref": "#/$defs/argv"},
        "cwd": {"$ref": "#/$defs/template"},
        "env": {
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
                },
                {
                    "type": "string",
                    "pattern": "^\\s*\\{\\{.*\\}\\}\\s*$",
                    "description": "a single template that renders to a mapping",
                },
            ],
        },
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "check_mode": {"enum": ["safe", "skip"]},
        "stdin": {"$ref": "#/$defs/template"},
    },
}

TYPE = StepType("command", run, describe, SCHEMA, preflight=missing)
