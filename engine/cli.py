"""``runbook`` on the command line: parse arguments, call ``api``, print, return an exit code.

Heavy modules (jinja2, jsonschema, rich, ansible, boto3, kubernetes) are imported inside the
commands that need them, so ``runbook --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from engine.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STEP_FAILED,
    EXIT_WAITING,
    InvalidInput,
    RunbookError,
)

RESULT_EXIT = {"done": EXIT_OK, "planned": EXIT_OK, "failed": EXIT_STEP_FAILED,
               "refused": EXIT_INVALID,
               "aborted": EXIT_STEP_FAILED, "waiting": EXIT_WAITING,
               "interrupted": EXIT_INTERRUPTED}

EPILOG = """exit codes: 0 done, 1 a step failed, 2 invalid input, 3 waiting for an approval,
4 blocked by a lock held by another run, 130 interrupted"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="runbook", description="Run release procedures as checked, "
                     "resumable, auditable runbooks.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    out = _Parser(add_help=False)
    out.add_argument("--output", choices=("text", "json"), default="text")

    sub.add_parser("list", parents=[out], help="list the runbooks")
    p = sub.add_parser("show", parents=[out], help="a runbook's params and steps")
    p.add_argument("name")
    p = sub.add_parser("validate", parents=[out], help="check runbooks without running them")
    p.add_argument("paths", nargs="*", metavar="PATH")
    for name, helptext in (("plan", "render the plan and dry-run it; changes nothing"),
                           ("run", "run a runbook: runbook run NAME --PARAM VALUE ...")):
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.add_argument("name")
        p.add_argument("--inventory", help="inventory name or path")
        p.add_argument("--output", choices=("text", "json", "markdown"), default="text")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="same as runbook plan")
    p = sub.add_parser("resume", parents=[out], help="continue a stopped run")
    p.add_argument("run_id")
    p.add_argument("--force", action="store_true",
                   help="resume even if the runbook or inventory changed (recorded)")
    p = sub.add_parser("status", parents=[out], help="recent runs, or one run in detail")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p = sub.add_parser("approve", parents=[out],
                       help="approve a run's step, checklist items or gate, or a plan's gate")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--plan", dest="plan_hash", help="approve this plan hash instead of a run")
    p.add_argument("--step")
    p.add_argument("--item", action="append", default=[], dest="items",
                   help="a checklist item to attest (repeat for several)")
    p.add_argument("--gate", help="a gate to approve, such as cab")
    p.add_argument("--by", required=True)
    p.add_argument("--ticket", default="", help="the change ticket, such as CHG-123")
    p.add_argument("--note", default="")
    p = sub.add_parser("abort", parents=[out], help="stop a run for good")
    p.add_argument("run_id")
    p.add_argument("--by")
    p = sub.add_parser("history", parents=[out], help="promotions, rollbacks and restores")
    p.add_argument("--env")
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=50)
    p = sub.add_parser("sandbox", parents=[out],
                       help="local emulated Kubernetes and AWS: up | down | status | env")
    p.add_argument("action", choices=("up", "down", "status", "env"))
    p.add_argument("--dir", help="sandbox folder (default $RUNBOOK_HOME/sandbox)")
    p.add_argument("--rollout-delay", type=float, default=1.0,
                   help="seconds a deployment takes to converge")
    p = sub.add_parser("lock", parents=[out], help="environment locks: list | release")
    p.add_argument("action", choices=("list", "release"))
    p.add_argument("--env")
    p.add_argument("--reason")
    p.add_argument("--by")
    p = sub.add_parser("audit", parents=[out],
                       help="the hash-chained journal: verify | export --run RUN_ID")
    p.add_argument("action", choices=("verify", "export"))
    p.add_argument("--run")
    p.add_argument("--file", help="write the change record here instead of printing it")
    p = sub.add_parser("schema", parents=[out], help="print a JSON schema")
    p.add_argument("kind", nargs="?", default="runbook", choices=("runbook", "inventory"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    output = "text"
    try:
        parser = build_parser()
        if not args_list or args_list[0] in ("-h", "--help"):
            parser.print_help()
            return EXIT_OK
        args, extra = parser.parse_known_args(args_list)
        output = args.output
        if extra and args.command not in ("plan", "run"):
            raise InvalidInput(f"unrecognized arguments: {' '.join(extra)}")
        return COMMANDS[args.command](args, extra)
    except RunbookError as exc:
        _error(str(exc), exc.exit_code, output)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted", EXIT_INTERRUPTED, output)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or a broken environment: one line, the trace on demand
        if os.environ.get("RUNBOOK_DEBUG"):
            raise
        _error(f"unexpected error: {type(exc).__name__}: {exc} (RUNBOOK_DEBUG=1 shows where)",
               EXIT_STEP_FAILED, output)
        return EXIT_STEP_FAILED


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _error(message: str, code: int, output: str) -> None:
    if output == "json":
        print(json.dumps({"error": message, "exit_code": code}))
    else:
        print(f"runbook: error: {message}", file=sys.stderr)


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _params_from(name: str, extra: list[str]) -> tuple[dict[str, str], bool]:
    """Turn ``--from uat1 --to staging`` into params, using the runbook's declared params."""
    from engine import api

    book = api.load_runbook(name)
    parser = _Parser(prog=f"runbook run {name}", add_help=False)
    parser.add_argument("-h", "--help", action="store_true")
    for param in book.params:
        if not param.secret:
            parser.add_argument(param.flag, dest=param.name, metavar=param.type.upper())
    ns, unknown = parser.parse_known_args(extra)
    if unknown:
        flags = ", ".join(p.flag for p in book.params if not p.secret) or "none"
        raise InvalidInput(f"unknown param {unknown[0]} (runbook {book.name} takes: {flags})",
                           file=str(book.path))
    values = {k: v for k, v in vars(ns).items() if k != "help" and v is not None}
    return values, bool(ns.help)


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api, loader

    rows = []
    for name, path in loader.list_names("runbooks").items():
        try:
            rows.append({"name": name, "description": api.load_runbook(str(path)).description,
                         "path": str(path)})
        except InvalidInput as exc:
            rows.append({"name": name, "description": f"INVALID: {exc}", "path": str(path)})
    if args.output == "json":
        _emit(rows)
    else:
        for row in rows:
            print(f"{row['name']:<16} {row['description']}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api, present

    book = api.load_runbook(args.name)
    if args.output == "json":
        _emit(present.runbook_dict(book))
    else:
        print(present.runbook_text(book))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    results = api.validate(args.paths)
    bad = [(t, e) for t, e in results if e is not None]
    if args.output == "json":
        _emit([{"path": t, "valid": e is None, "error": str(e) if e else None}
               for t, e in results])
    else:
        for target, error in results:
            if error is None:
                print(f"ok: {target}")
            else:
                print(f"runbook: error: {error}", file=sys.stderr)
    return EXIT_INVALID if bad else EXIT_OK


def cmd_plan(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api, present

    params, want_help = _params_from(args.name, extra)
    if want_help:
        print(present.runbook_text(api.load_runbook(args.name)))
        return EXIT_OK
    report = api.plan(runbook=args.name, params=params, inventory=args.inventory)
    if args.output == "json":
        _emit(present.plan_dict(report))
    elif args.output == "markdown":
        print(present.plan_markdown(report), end="")
    else:
        print(present.plan_text(report))
    return RESULT_EXIT[report.dry_run.status]


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.dry_run:
        return cmd_plan(args, extra)
    from engine import api, present
    from engine.console import reporter_for
    from engine.report import NullReporter

    params, want_help = _params_from(args.name, extra)
    if want_help:
        print(present.runbook_text(api.load_runbook(args.name)))
        return EXIT_OK
    reporter = NullReporter() if args.output == "json" else reporter_for()
    result = api.run(runbook=args.name, params=params, inventory=args.inventory,
                     reporter=reporter)
    return _finish(args.output, result)


def cmd_resume(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.console import reporter_for
    from engine.report import NullReporter

    reporter = NullReporter() if args.output == "json" else reporter_for()
    result = api.resume(run_id=args.run_id, force=args.force, reporter=reporter)
    return _finish(args.output, result)


def _finish(output: str, result: Any) -> int:
    from engine import present

    code = RESULT_EXIT[result.status]
    if output == "json":
        _emit({**present.result_dict(result), "exit_code": code})
    elif result.status == "waiting":
        items = " --item ITEM ... | --gate GATE" if "not satisfied" in result.message else ""
        print(f"approve with: runbook approve {result.run_id} --step {result.waiting_for} "
              f"--by NAME{items}, then: runbook resume {result.run_id}")
    elif result.status in ("failed", "interrupted"):
        print(f"resume with: runbook resume {result.run_id}")
    return code


def cmd_status(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api, present

    found = api.status(run_id=args.run_id, limit=args.limit)
    if isinstance(found, list):
        if args.output == "json":
            _emit([asdict(r) for r in found])
        else:
            print(present.runs_table(found))
    elif args.output == "json":
        _emit(present.detail_dict(found))
    else:
        print(present.detail_text(found))
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import approvals as approvals_mod

    if not args.gate and not args.step:
        raise InvalidInput("say what is approved: --step STEP [--item ITEM ...] or --gate NAME")
    approvals = approvals_mod.approve(
        by=args.by, run_id=args.run_id, plan_hash=args.plan_hash, step=args.step,
        items=args.items, gate=args.gate, note=args.note, ticket=args.ticket)
    if args.output == "json":
        _emit([asdict(a) for a in approvals])
        return EXIT_OK
    if args.gate:
        what = f"the {args.gate} gate of"
    else:
        what = f"items {', '.join(args.items)} of step {args.step} of" if args.items \
            else f"step {args.step} of"
    if args.plan_hash:
        print(f"{args.by} approved {what} plan {approvals[0].plan_hash[:16]}; it counts for "
              "a run whose own plan has the same hash")
    else:
        print(f"{args.by} approved {what} run {args.run_id}; "
              f"continue with: runbook resume {args.run_id}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    records = api.history(env=args.env, kind=args.kind, limit=args.limit)
    if args.output == "json":
        _emit([asdict(r) for r in records])
        return EXIT_OK
    if not records:
        print("no history yet")
    for r in records:
        d = r.data
        detail = " ".join(f"{k}={d[k]}" for k in sorted(d))
        print(f"{r.at}  {r.kind:<10} {r.env:<8} by {r.user:<10} run {r.run_id}  {detail}")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import sandbox

    folder = sandbox.folder(args.dir)
    if args.action == "up":
        info = sandbox.up(folder, rollout_delay=args.rollout_delay)
    elif args.action == "down":
        stopped = sandbox.down(folder)
        print("sandbox stopped" if stopped else "no sandbox was running", file=sys.stderr)
        return EXIT_OK
    else:
        found = sandbox.status(folder)
        if found is None:
            print("no sandbox is running", file=sys.stderr)
            return EXIT_STEP_FAILED
        info = found
    if args.output == "json":
        _emit(info)
    elif args.action == "status":
        for key, value in info.items():
            print(f"{key}: {value}")
    else:
        print(sandbox.exports(info))
        if args.action == "up":
            print(f"# sandbox up: Kubernetes {info['kube_url']}, AWS {info['aws_url']}",
                  file=sys.stderr)
            print('# use it in this shell with: eval "$(runbook sandbox env)"', file=sys.stderr)
    return EXIT_OK


def cmd_abort(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    record = api.abort(run_id=args.run_id, by=args.by)
    if args.output == "json":
        _emit(asdict(record))
    else:
        print(f"run {record.id} {record.status}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import schema

    _emit(schema.schema(args.kind))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "list": cmd_list, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan,
    "run": cmd_run, "resume": cmd_resume, "status": cmd_status, "approve": cmd_approve,
    "abort": cmd_abort, "schema": cmd_schema, "history": cmd_history, "sandbox": cmd_sandbox,
}


def cmd_lock(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    if args.action == "release":
        if not args.env or not args.reason:
            raise InvalidInput("runbook lock release needs --env ENV and --reason TEXT")
        api.release_lock(env=args.env, reason=args.reason, by=args.by)
        print(f"released the lock on {args.env} (recorded in the journal)")
        return EXIT_OK
    held = api.locks()
    if args.output == "json":
        _emit([asdict(lock) for lock in held])
    elif not held:
        print("no environment is locked")
    for lock in held if args.output != "json" else []:
        print(f"{lock.env:<10} run {lock.run_id}  by {lock.user}  since {lock.since}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api, audit
    from engine.store import open_store

    if args.action == "verify":
        store = open_store()
        try:
            records = store.journal()
        finally:
            store.close()
        problems = audit.verify(records)
        if args.output == "json":
            _emit({"records": len(records), "intact": not problems, "problems": problems})
        elif problems:
            for problem in problems:
                print(f"journal: {problem}")
        else:
            print(f"journal intact: {len(records)} records, "
                  f"head {records[-1].hash[:16] if records else '-'}")
        return EXIT_STEP_FAILED if problems else EXIT_OK
    if not args.run:
        raise InvalidInput("runbook audit export needs --run RUN_ID")
    text = api.change_record(run_id=args.run)
    if args.file:
        with open(args.file, "w") as fh:
            fh.write(text)
        print(f"wrote {args.file}")
    else:
        print(text, end="")
    return EXIT_OK


COMMANDS.update({"lock": cmd_lock, "audit": cmd_audit})
