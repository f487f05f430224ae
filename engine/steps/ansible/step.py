"""``ansible``: run a playbook through ansible-runner, streaming task events as they happen.

During a plan the playbook runs in check+diff mode. What the engine hands Ansible is data,
never code: every string of the extra vars reaches ansible-core marked ``!unsafe``, so a
``{{ }}`` inside a param, a name, an inventory value or an earlier step's result is never
rendered. The playbook sees only the environment it needs (an allowlist, plus the names the
step lists in ``env``). While it runs, everything ansible-runner writes (the command with its
environment, events, stdout) lives in a private folder in memory; the copy kept under the
run's folder has the run's secrets masked. The playbook's process tree runs under the guard
(``engine/system/guard.py``): it ends with the engine, even when the engine is killed.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from engine.errors import StepFailed
from engine.language.model import Outcome, Step
from engine.status import StepStatus
from engine.steps.ansible import clients as playbook_clients
from engine.steps.ansible import policy
from engine.steps.base import StepType
from engine.system import interrupts, proc

if TYPE_CHECKING:
    from engine.steps.ansible import warm as ansible_warm
    from engine.steps.base import StepContext

MAX_MESSAGE = 400
_TASK_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}
MODES = ("warm", "runner")
_STATS = ("skipped", "ok", "dark", "failures", "ignored", "rescued", "processed", "changed")
MAX_KEPT = 2000  # characters of one value of a task's result kept in the step's record


def recorded(res: Mapping[str, Any]) -> dict[str, Any]:
    """What a step's record keeps of one task's result: its plain values (``changed``,
    ``msg``, ``rc``, a module's ``image`` or ``file``; each string cut at MAX_KEPT) and its
    file diffs, as unified diffs. The objects a module returns (the Deployment as the cluster
    holds it, the module's arguments, a loop's items, what ``set_stats`` passed on: the
    step's outputs) stay in the run's artifacts, with the run's secrets masked, until
    ``runbook gc``."""
    kept: dict[str, Any] = {}
    for key, value in res.items():
        if key.startswith("_ansible") or key in ("invocation", "ansible_stats"):
            continue
        if key == "diff":
            diffs = [unified(d) for d in (value if isinstance(value, list) else [value])
                     if isinstance(d, dict) and isinstance(d.get("before"), str) and
                     isinstance(d.get("after"), str)]
            if diffs:
                kept[key] = diffs
            continue
        if key == "msg" and not isinstance(value, str):
            value = json.dumps(value, default=str, sort_keys=True)
        if isinstance(value, str):
            kept[key] = value if len(value) <= MAX_KEPT else value[:MAX_KEPT] + "…"
        elif value is None or isinstance(value, (bool, int, float)):
            kept[key] = value
    return kept


def unified(diff: Mapping[str, Any]) -> dict[str, str]:
    """A module's file diff (the whole file before and after) as the unified diff a reviewer
    reads, under the file's name: the lines that changed and three around them."""
    before, after = str(diff["before"]), str(diff["after"])
    header = str(diff.get("after_header") or diff.get("before_header") or "file")
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(),
                                 str(diff.get("before_header") or header), header, lineterm="")
    text = "\n".join(lines)
    return {"file": header, "unified": text if len(text) <= MAX_KEPT * 4
            else text[:MAX_KEPT * 4] + "…"}


def without_outputs(results: Mapping[str, dict[str, Any]],
                    outputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each task's kept values, less those the step's outputs already hold (the image a read
    task found is the step's ``image`` output): a record holds a value once."""
    return {task: {k: v for k, v in res.items()
                   if k == "changed" or k not in outputs or outputs[k] != v}
            for task, res in results.items()}


def mode() -> str:
    """How playbooks run: ``warm`` (a warm worker per run, forking a child per playbook) or
    ``runner`` (one ``ansible-playbook`` process per playbook, through ansible-runner)."""
    return os.environ.get("RUNBOOK_ANSIBLE", "") or "warm"


def preflight(spec: Mapping[str, Any]) -> str | None:
    if mode() not in MODES:
        return (f"RUNBOOK_ANSIBLE is {mode()!r}: it says how playbooks run, "
                f"one of {', '.join(MODES)}")
    from engine.steps.ansible import warm as ansible_warm

    return ansible_warm.keep_warm_problem()


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec
    playbook = Path(str(spec["playbook"]))
    if not playbook.is_absolute():
        playbook = (ctx.runbook_dir / playbook).resolve()
    if ctx.dry_run and spec.get("check_mode") == "skip":
        return Outcome(StepStatus.WOULD_RUN, message=f"ansible-playbook {playbook.name}")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    failures: list[str] = []
    outputs: dict[str, Any] = {}
    stats: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_stats":
            data = event.get("event_data", {})
            stats.update({key: data[key] for key in _STATS if data.get(key)})
            # What the playbook passed on with set_stats (per_host: false, aggregated as
            # Ansible does): ansible-runner's callback hands it over as artifact_data.
            outputs.update(data.get("artifact_data") or {})
            return True
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
        results[task] = recorded(res)
        return True

    with proc.scratch_dir(ctx.run_id or "plan", ctx.step.id) as scratch:
        extravars = scratch / "extravars.yml"
        extravars.write_text(unsafe_yaml(dict(spec.get("extravars") or {})))
        args = [*(["--check", "--diff"] if ctx.dry_run else []),
                "-i", _inventory(scratch, spec), "-e", f"@{extravars}", str(playbook)]
        named = [str(n) for n in spec.get("env") or []]
        through = _through_runner if mode() == "runner" else _through_worker
        try:
            rc, status = through(ctx, scratch, args, named, on_event)
        finally:
            # After a timeout or an interrupt, Ansible's workers (in sessions of their own)
            # could outlive the playbook: nothing of this step runs on once it has ended.
            # (The warm worker's side has ended them already, whichever way the step ended.)
            if through is _through_runner:
                proc.end_processes_of(ctx.run_id, ctx.step.id)
            keep_masked(scratch / "artifacts", ctx.workdir / "artifacts", ctx.redact)
    result = {"rc": rc, "status": status, "stats": stats,
              "results": without_outputs(results, outputs),
              "outputs": outputs, "changed": any(r.get("changed") for r in results.values())}
    if status == "canceled":  # only ansible-runner's own signal handling cancels
        raise KeyboardInterrupt
    if status == "timeout":
        raise StepFailed(f"playbook {playbook.name} timed out after {spec['timeout']} s", result)
    if rc != 0:
        why = failures[-1] if failures else f"ansible-playbook exited with {rc}"
        if len(why) > MAX_MESSAGE:  # the whole text stays in the result and the artifacts
            why = why[:MAX_MESSAGE] + "…"
        raise StepFailed(f"playbook {playbook.name}: {why}", result)
    missing = [name for name in ctx.step.outputs if name not in outputs]
    if missing and not ctx.dry_run:  # a dry run's playbook may skip what would set them
        raise StepFailed(f"playbook {playbook.name} did not set the output"
                         f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         "(declared in the step's outputs: set it with ansible.builtin.set_stats)",
                         result)
    summary = outputs.get("summary")
    return Outcome(StepStatus.CHECKED if ctx.dry_run else StepStatus.OK, result,
                   message=summary if isinstance(summary, str) else "")


def _through_runner(ctx: StepContext, scratch: Path, args: list[str], named: list[str],
                    on_event: Callable[[dict[str, Any]], bool]) -> tuple[int, str]:
    """One ``ansible-playbook`` process, run by ansible-runner."""
    # Imported here, not above: ``runbook --help`` and runbooks without playbooks stay fast.
    from ansible_runner.interface import init_runner

    # Whatever ansible-runner does with signals, the engine's handlers are back after it:
    # a Ctrl-C or SIGTERM after a playbook still stops the run.
    with interrupts.kept():
        runner = init_runner(
            private_data_dir=str(scratch),
            playbook=args[-1],
            # With a launcher as its binary, ansible-runner passes the command line on only
            # here (its own inventory and extra vars arguments are not used).
            cmdline=shlex.join(args),
            envvars={**policy.settings(os.environ), **policy.home_env(scratch)},
            project_dir=os.getcwd(),
            binary=_launcher(ctx.workdir),
            event_handler=on_event,
            cancel_callback=lambda: False,  # signals stay the engine's, not ansible-runner's
            quiet=True,
            suppress_env_files=True,
            timeout=ctx.spec.get("timeout"),
        )
        runner.config.env = policy.playbook_env(runner.config.env, os.environ, named,
                                         {**proc.tags(ctx.run_id), "PATH": _path(),
                                          proc.STEP_TAG: ctx.step.id})
        runner.run()
    return runner.rc, runner.status


def _through_worker(ctx: StepContext, scratch: Path, args: list[str], named: list[str],
                    on_event: Callable[[dict[str, Any]], bool]) -> tuple[int, str]:
    """A child of the run's warm worker, leaving the artifacts ansible-runner would."""
    from engine.steps.ansible import warm as ansible_warm

    cwd = os.getcwd()
    try:
        worker = _worker(ctx.run_id)
    except ansible_warm.WorkerDied as exc:
        raise StepFailed(f"the Ansible worker did not start: {ctx.redact(str(exc))}",
                         {"rc": None, "status": "error"}) from None
    ident = str(uuid.uuid4())
    artifacts = scratch / "artifacts" / ident
    artifacts.mkdir(parents=True)
    (artifacts / "fact_cache").mkdir()
    env = {**worker.env, **{name: os.environ[name] for name in named if name in os.environ},
           proc.STEP_TAG: ctx.step.id, "AWX_ISOLATED_DATA_DIR": str(artifacts),
           # Module payloads (with their arguments) in the step's own folder, removed with it
           # (or by a resume), never in a kept worker's home, kept after an interrupt.
           "ANSIBLE_REMOTE_TEMP": str(scratch / "remote-tmp"),
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(artifacts / "fact_cache"),
           "RUNNER_OMIT_EVENTS": "False", "RUNNER_ONLY_FAILED_EVENTS": "False"}
    command = ["ansible-playbook", *args]
    _private(artifacts / "command").write_text(
        json.dumps({"command": command, "cwd": cwd, "env": env}))
    stream = ansible_warm.EventStream(artifacts, ident, on_event)
    try:
        try:
            finished = worker.run(command, env, cwd, ctx.step.id, stream.feed,
                                  ctx.spec.get("timeout"))
        except ansible_warm.NotTaken:
            # A kept worker that ended idle as this engine connected ran nothing: once
            # more, with the worker that takes its place.
            worker = _worker(ctx.run_id)
            env = {**env, **{k: v for k, v in worker.env.items()
                             if k in ("ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP")}}
            finished = worker.run(command, env, cwd, ctx.step.id, stream.feed,
                                  ctx.spec.get("timeout"))
    except ansible_warm.WorkerDied as exc:
        raise StepFailed(f"the Ansible worker ended during the playbook "
                         f"{ctx.redact(str(exc))}", {"rc": None, "status": "error"}) from None
    finally:
        stream.close()
    _private(artifacts / "stderr").write_text("")
    _private(artifacts / "rc").write_text(str(finished.rc))
    _private(artifacts / "status").write_text(finished.status)
    return finished.rc, finished.status


def _worker(run_id: str, clients: Iterable[str] | None = None) -> ansible_warm.Worker:
    from engine.steps.ansible import warm as ansible_warm

    base = policy.playbook_env({**os.environ, **policy.settings(os.environ), **_callback_env()},
                               os.environ, [], {**proc.tags(run_id), "PATH": _path()})
    return ansible_warm.worker_for(run_id, base, os.getcwd(), clients)


def prepare(run_id: str, steps: Sequence[tuple[Step, Path]]) -> None:
    """Start the run's warm worker now, so it loads while the steps before its first
    playbook run, with the client libraries the run's playbooks use."""
    from engine.steps.ansible import warm as ansible_warm

    if mode() == "warm" and not ansible_warm.keep_warm_problem():
        # Whatever stops it from starting is told by the step that needs it.
        with contextlib.suppress(Exception):
            _worker(run_id, clients_used(steps))


def clients_used(steps: Sequence[tuple[Step, Path]]) -> list[str] | None:
    """The client libraries the ansible steps' playbooks use (kubernetes; aws, and the AWS
    services ecr and rds) and Apprise for the run's messages, in the order the run first
    needs them; None when a playbook cannot be read before the run (a templated path, a
    missing file)."""
    found: list[str] = []
    for step, folder in steps:
        if step.type == "notify" and "apprise" not in found:
            found.append("apprise")  # the worker delivers the run's messages
        if step.type != "ansible":
            continue
        playbook = str(step.spec.get("playbook", ""))
        if "{" in playbook:
            return None
        try:
            used = playbook_clients.of_playbook((folder / playbook).read_text(errors="replace"))
        except (OSError, yaml.YAMLError):
            return None
        found += [name for name in used if name not in found]
    return found


def _private(path: Path) -> Path:
    path.touch(mode=0o600)
    return path


def _callback_env() -> dict[str, str]:
    """What ansible-runner sets for its event callback, as it sets it."""
    from engine.steps.ansible import warm as ansible_warm

    # Beside the user's own callbacks, whose stdout callback it wraps (ansible-runner's way).
    plugins = ":".join(p for p in (ansible_warm.callback_dir(),
                                   os.environ.get("ANSIBLE_CALLBACK_PLUGINS", "")) if p)
    env = {"ANSIBLE_CALLBACK_PLUGINS": plugins, "ANSIBLE_STDOUT_CALLBACK": "awx_display",
           "ANSIBLE_CACHE_PLUGIN": "jsonfile"}
    if os.environ.get("ANSIBLE_STDOUT_CALLBACK"):
        env["ORIGINAL_STDOUT_CALLBACK"] = os.environ["ANSIBLE_STDOUT_CALLBACK"]
    return env


class _UnsafeDumper(yaml.SafeDumper):
    """Writes every string as ``!unsafe``: ansible-core takes it as data, never a template."""


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", value, style='"')


_UnsafeDumper.add_representer(str, _unsafe_str)


def unsafe_yaml(extravars: Mapping[str, Any]) -> str:
    """Extra vars as YAML for ``-e @file``, every string value tagged ``!unsafe``."""
    plain_keys = {str(k): v for k, v in extravars.items()}
    body = yaml.dump(plain_keys, Dumper=_UnsafeDumper, sort_keys=True, allow_unicode=True)
    # Keys are variable names: Ansible wants them as plain strings, not unsafe ones.
    return re.sub(r'^!unsafe "([A-Za-z_][A-Za-z0-9_]*)":', r"\1:", body, flags=re.MULTILINE)


def keep_masked(source: Path, dest: Path, redact: Callable[[str], str]) -> None:
    """Copy ansible-runner's artifacts to the run's folder with every secret masked."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not path.is_file() or path.name.endswith("-partial.json"):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # nothing here is binary; what cannot be read as text is not kept
        target.write_text(redact(text), encoding="utf-8")
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)


def _inventory(scratch: Path, spec: Any) -> str:
    if spec.get("inventory"):
        return str(spec["inventory"])
    path = scratch / "localhost.ini"
    path.write_text("localhost ansible_connection=local "
                    f"ansible_python_interpreter={sys.executable}\n")
    return str(path)


def _launcher(workdir: Path) -> str:
    """An executable that runs ansible-playbook (the one beside this interpreter) under the
    guard: ansible-runner takes one path as its binary."""
    ansible = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) \
        or "ansible-playbook"
    path = workdir / "ansible-playbook"
    path.write_text("#!/bin/sh\nexec " + shlex.join([*proc.guarded([ansible])]) + ' "$@"\n')
    path.chmod(stat.S_IRWXU)
    return str(path)


def _path() -> str:
    # Tasks find the tools installed beside this interpreter (kubectl's peers, ansible's own),
    # whatever PATH the user has.
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return path if here in path.split(os.pathsep) else here + os.pathsep + path


def describe(spec: Mapping[str, Any]) -> list[str]:
    def value(v: Any) -> str:  # a value per service: each service's, by name
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{k}: {value(x)}" for k, x in v.items()) + "}"
        return str(v)

    extra = ", ".join(f"{k}={value(v)}" for k, v in (spec.get("extravars") or {}).items())
    lines = [f"playbook {spec['playbook']}" + (f" with {extra}" if extra else "")]
    if spec.get("outputs"):
        lines.append(f"passes on: {', '.join(map(str, spec['outputs']))}")
    return lines


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["playbook"],
    "properties": {
        "playbook": {"$ref": "#/$defs/template"},
        "extravars": {"type": "object"},
        "inventory": {"$ref": "#/$defs/template"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "check_mode": {"enum": ["check", "skip"]},
        "env": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "uniqueItems": True,
            "description": (
                "names of environment variables the playbook sees besides the allowlist (PATH, "
                "locale, KUBECONFIG, AWS_*, K8S_AUTH_*, ANSIBLE_*, proxies and CA bundles)"
            ),
        },
        "outputs": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "uniqueItems": True,
            "description": (
                "the names the playbook passes on with ansible.builtin.set_stats (per_host: "
                "false), seen by later steps as REGISTER.outputs.NAME; a run whose playbook did "
                "not set one fails the step"
            ),
        },
    },
}

def finish(at_once: bool) -> None:
    """End the run's warm worker, if a playbook or a prepare started one."""
    from engine.steps.ansible import warm as ansible_warm

    ansible_warm.close_all(at_once=at_once)


TYPE = StepType("ansible", run, describe, SCHEMA, outputs=True, preflight=preflight,
                prepare=prepare, finish=finish)
