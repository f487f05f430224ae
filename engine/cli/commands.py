"""What each ``runbook`` subcommand does: turn parsed arguments into an ``api`` call, print
the result, return the exit code. Heavy modules are imported inside the handlers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.cli.parser import Parser, add_params, add_run_options, engine_flags
from engine.errors import EXIT_INVALID, EXIT_OK, EXIT_STEP_FAILED, InvalidInput, exit_code
from engine.status import RunStatus
from engine.system.identity import shown

if TYPE_CHECKING:
    from engine.language.model import Runbook
    from engine.run.report import Reporter
    from engine.trust.signatures import Signing


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def param_parser(book: Runbook, command: str = "run") -> Parser:
    """The options a runbook's params add to ``runbook run NAME``."""
    parser = Parser(prog=f"runbook {command} {book.name}", add_help=False)
    add_params(parser, book)
    return parser


def taken_flags() -> frozenset[str]:
    """The engine's own options of ``run`` and ``plan``: no param may be given as one."""
    return engine_flags("run") | engine_flags("plan")


def _params_from(book: Runbook, command: str, extra: list[str]) -> dict[str, Any]:
    """Turn ``--from uat1 --to staging`` into params, using the runbook's declared params."""
    from engine.language import params as params_mod

    params_mod.check_flags(book, taken_flags())
    ns, unknown = param_parser(book, command).parse_known_args(extra)
    if unknown:
        flags = ", ".join("/".join(p.flags) for p in book.params if not p.secret) or "none"
        raise InvalidInput(f"unknown param {unknown[0]} (runbook {book.name} takes: {flags})",
                           file=str(book.path))
    return {k: v for k, v in vars(ns).items() if v is not None}


def _runbook_rows() -> list[dict[str, str]]:
    from engine import api
    from engine.language import loader

    rows = []
    for name, path in loader.list_names("runbooks").items():
        try:
            rows.append({"name": name, "description": api.load_runbook(str(path)).description,
                         "path": str(path)})
        except InvalidInput as exc:
            rows.append({"name": name, "description": f"INVALID: {exc}", "path": str(path)})
    return rows


def _help(command: str, name: str | None) -> str:
    """``runbook run --help``: the runbooks; ``runbook run NAME --help``: its params."""
    from engine import api
    from engine.views import present

    if name is not None:
        book = api.load_runbook(name)
        shown_params = []
        for p in book.params:
            if p.secret:
                continue
            flag = "/".join(p.flags) if p.type == "boolean" else f"{p.flag} {p.type.upper()}"
            shown_params.append(flag if p.required else f"[{flag}]")
        usage = " ".join([f"usage: runbook {command} {name}", *shown_params, "[options]"])
        return f"{usage}\n\n{present.runbook_text(book)}"
    parser = Parser(prog=f"runbook {command}", add_help=False,
                    usage=f"runbook {command} NAME [--PARAM VALUE ...] [options]")
    parser.add_argument("name", metavar="NAME", help="a runbook listed below, or a runbook file")
    add_run_options(parser, command)
    rows = _runbook_rows()
    width = max([len(r["name"]) for r in rows] + [8])
    lines = [parser.format_help().rstrip(), "", "runbooks:"]
    lines += [f"  {r['name']:<{width}}  {r['description']}" for r in rows]
    lines += ["", f"runbook {command} NAME --help lists the params of runbook NAME."]
    return "\n".join(lines)


def _named(args: argparse.Namespace, command: str) -> str:
    if args.name is None:
        raise InvalidInput(f"runbook {command}: give a runbook NAME "
                           f"(runbook {command} --help lists them)")
    return str(args.name)


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    rows = _runbook_rows()
    if args.output == "json":
        _emit(rows)
    else:
        for row in rows:
            print(f"{row['name']:<16} {row['description']}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present

    book = api.load_runbook(args.name)
    if args.output == "json":
        _emit(present.runbook_dict(book))
    else:
        print(present.runbook_text(book))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    results = api.validate(args.paths, taken_flags=taken_flags())
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
    from engine import api
    from engine.views import present

    command = "run" if getattr(args, "dry_run", False) else "plan"
    if args.help:
        print(_help(command, args.name))
        return EXIT_OK
    name = _named(args, command)
    book = api.load_runbook(name)
    params = _params_from(book, command, extra)
    report = api.plan(runbook=book, params=params, inventory=args.inventory,
                      accept_drift=args.accept_drift)
    if args.output == "json":
        _emit(present.plan_dict(report))
    elif args.output == "markdown":
        print(present.plan_markdown(report), end="")
    elif args.output == "html":
        from engine.views import present_record_html

        print(present_record_html.plan_html(report), end="")
    else:
        print(present.plan_text(report))
    return exit_code(report.dry_run.status)


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.dry_run:
        return cmd_plan(args, extra)
    from engine import api
    if args.help:
        print(_help("run", args.name))
        return EXIT_OK
    name = _named(args, "run")
    book = api.load_runbook(name)
    params = _params_from(book, "run", extra)
    result = api.run(runbook=book, params=params, inventory=args.inventory,
                     reporter=_reporter(args.output), accept_drift=args.accept_drift)
    return _finish(args.output, result)


def cmd_resume(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    result = api.resume(run_id=args.run_id, force=args.force,
                        reporter=_reporter(args.output))
    return _finish(args.output, result)


def _reporter(output: str) -> Reporter:
    """JSON is the whole output; markdown (a CI job's summary) goes to stdout while the
    progress lines go to stderr, into the job's log."""
    from engine.cli.console import PlainReporter, reporter_for
    from engine.run.report import NullReporter

    if output == "json":
        return NullReporter()
    return PlainReporter(sys.stderr) if output == "markdown" else reporter_for()


def _finish(output: str, result: Any) -> int:
    from engine import api
    from engine.trust import approval_info
    from engine.views import present

    code = exit_code(result.status)
    failed = result.status == RunStatus.FAILED
    dead_end = api.cannot_succeed(run_id=result.run_id) if failed else None
    waits: list[approval_info.Wait] = []
    if result.status == RunStatus.WAITING:
        report = next((s for s in result.steps if s.step_id == result.waiting_for), None)
        waits = approval_info.waits(str(result.waiting_for),
                                    (report.result if report else None) or {})
    commands = present.wait_commands(result.run_id, waits)
    if output == "json":
        _emit({**present.result_dict(result), "exit_code": code,
               **({"cannot_succeed": present.dead_end_text(dead_end)} if dead_end else {}),
               **({"approve_with": commands} if commands else {})})
    elif output == "markdown":
        print(_result_markdown(result, commands,
                               present.dead_end_text(dead_end) if dead_end else ""), end="")
    elif dead_end:
        print(f"run {result.run_id} cannot succeed: {present.dead_end_text(dead_end)}; "
              f"end it with: runbook abort {result.run_id}")
    elif commands:
        print("approve with:")
        for command in commands:
            print(f"  {command}")
        print(f"then: runbook resume {result.run_id}")
    elif result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        print(f"resume with: runbook resume {result.run_id}")
    return code


def _result_markdown(result: Any, commands: list[str], dead_end: str) -> str:
    """A run's outcome for a CI job's summary: its steps, then what to do next as commands
    to copy."""
    from engine.views.present import md_cell

    run = result.run_id
    out = [f"## Run `{run}`: {result.status}", ""]
    if result.message:
        out += [md_cell(result.message), ""]
    out += ["| Step | Status | Time | Message |", "|---|---|---|---|"]
    out += [f"| `{s.step_id}` {md_cell(s.name)} | {s.status} | "
            f"{f'{s.seconds:.1f} s' if s.seconds else '—'} | {md_cell(s.message) or '—'} |"
            for s in result.steps]
    if dead_end:
        out += ["", f"This run cannot succeed: {md_cell(dead_end)}. End it with:", "",
                "```bash", f"runbook abort {run}", "```"]
    elif commands:
        out += ["", "Waiting for approval. Replace NAME (and TICKET) and run:", "", "```bash",
                *commands, "```", "", "then:", "", "```bash", f"runbook resume {run}", "```"]
    elif result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        out += ["", "Resume with:", "", "```bash", f"runbook resume {run}", "```"]
    return "\n".join(out) + "\n"


def cmd_status(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api
    from engine.views import present

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

    from engine import api

    if not args.gate and not args.step:
        raise InvalidInput("say what is approved: --step STEP [--item ITEM ...] or --gate NAME")
    if args.payload:
        sys.stdout.write(api.approval_payload(
            by=args.by, run_id=args.run_id, plan_hash=args.plan_hash, step=args.step,
            items=args.items, gate=args.gate, note=args.note, ticket=args.ticket,
            at=args.at).decode())
        return EXIT_OK
    approvals = api.approve(
        by=args.by, run_id=args.run_id, plan_hash=args.plan_hash, step=args.step,
        items=args.items, gate=args.gate, note=args.note, ticket=args.ticket,
        signing=_signing(args), at=args.at)
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


def _signing(args: argparse.Namespace) -> Signing | None:
    """How the approval is signed, from --sign [KEY] or --signature FILE (with --at)."""
    from engine.trust.signatures import Signing

    if args.sign is not None and args.signature:
        raise InvalidInput("--sign signs here, --signature gives one made elsewhere: not both")
    if args.signature:
        if not args.at:
            raise InvalidInput("--signature needs --at TIME: the time of the payload signed")
        try:
            with open(args.signature, encoding="utf-8", errors="replace") as fh:
                return Signing(signature=fh.read(64_000))
        except OSError as exc:
            raise InvalidInput(f"--signature: cannot read {args.signature}: "
                               f"{exc.strerror}") from exc
    if args.sign is not None:
        if args.at:
            raise InvalidInput("--at is for a signature made elsewhere (--signature, "
                               "--payload): --sign signs now")
        return Signing(key=args.sign)
    if args.at:
        raise InvalidInput("--at is for a signature made elsewhere: give --signature FILE")
    return None


def cmd_history(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    records = api.history(env=args.env, kind=args.kind, limit=args.limit)
    if args.output == "json":
        _emit([asdict(r) for r in records])
        return EXIT_OK
    if not records:
        print("nothing recorded matches" if args.env or args.kind else "no history yet")
    for r in records:
        d = r.data
        detail = " ".join(f"{k}={d[k]}" for k in sorted(d))
        print(f"{r.at}  {r.kind:<10} {r.env:<8} by {shown(r.user):<10} run {r.run_id}  "
              f"{shown(detail)}")
    return EXIT_OK


def cmd_board(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present_board

    if args.serve:
        from engine.cli import board_server

        with board_server.server(port=args.port, inventory=args.inventory,
                                 refresh=args.refresh) as served:
            print(f"serving the board on http://{served.host}:{served.port}/ "
                  "(Ctrl-C stops it)", file=sys.stderr)
            served.serve_forever()
        return EXIT_OK
    board = api.board(inventory=args.inventory)
    if args.html:
        with open(args.html, "w") as fh:
            fh.write(present_board.board_html(board))
        print(f"wrote {args.html}", file=sys.stderr)
    elif args.output == "json":
        _emit(present_board.board_dict(board))
    else:
        print(present_board.board_text(board))
    return EXIT_OK


def cmd_drift(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present

    found = api.drift(env=args.env, inventory=args.inventory)
    if args.output == "json":
        _emit([d.as_dict() for d in found])
    else:
        print(present.drift_text(found))
    return EXIT_OK if all(d.agrees for d in found) else EXIT_STEP_FAILED


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
        _emit(sandbox.shown(info))
    elif args.action == "status":
        for key, value in sandbox.shown(info).items():
            print(f"{key}: {value}")
    else:
        print(sandbox.exports(info))
        if args.action == "up":
            postgres = info.get("postgres_missing") or f"127.0.0.1:{info['postgres_port']}"
            monitor = info.get("prometheus_url") or info.get("prometheus_missing")
            print(f"# sandbox up: Kubernetes {info['kube_url']}, AWS {info['aws_url']}, "
                  f"PostgreSQL {postgres}, Prometheus {monitor}", file=sys.stderr)
            print('# use it in this shell with: eval "$(runbook sandbox env)"', file=sys.stderr)
    return EXIT_OK


def cmd_abort(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    result = api.abort(run_id=args.run_id, by=args.by)
    record = result.run
    if args.output == "json":
        _emit({**asdict(record), "holder": result.holder, "stopped": result.stopped})
    elif result.stopped:
        print(f"run {record.id} {record.status}"
              + (f"; process {result.holder} stopped" if result.holder else ""))
    else:
        print(f"run {record.id} {record.status}; process {result.holder} has not stopped "
              f"after {api.ABORT_WAIT:g} s: its lock is released when it does",
              file=sys.stderr)
        return EXIT_STEP_FAILED
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, extra: list[str]) -> int:
    from engine.language import schema

    # The shipped file as it is, so that saving the output gives the file editors point at.
    print(schema.schema_text(args.kind), end="")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace, extra: list[str]) -> int:
    from engine.cli import completion

    print(completion.script(args.shell), end="")
    return EXIT_OK


def cmd_store(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import store

    before, after = store.migrate()
    if args.output == "json":
        _emit({"from": before, "to": after})
    elif before == after:
        print(f"state store at version {after}: nothing to migrate")
    elif before == 0:
        print(f"state store created at version {after}")
    else:
        print(f"state store migrated from version {before} to {after}")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    result = api.gc(older_than=args.older_than, inventory=args.inventory, dry_run=args.dry_run)
    collected = result.collected
    if args.output == "json":
        _emit({"dry_run": result.dry_run, "older_than": result.older_than,
               "source": result.source, "ended_before": result.cutoff,
               "removed": [asdict(r) for r in collected.removed],
               "finished": [asdict(r) for r in collected.finished],
               "kept_open": collected.kept_open, "kept_unknown": collected.kept_unknown})
        return EXIT_OK
    verb = "would remove" if result.dry_run else "removed"
    for removal in collected.finished:
        print(f"removed runs/{removal.run_id} (left half removed by a gc that was stopped)")
    for removal in collected.removed:
        print(f"{verb} runs/{removal.run_id}: {removal.files} files, "
              f"{_size(removal.bytes)}, ended {removal.ended_at}")
    total = sum(r.bytes for r in collected.removed)
    print(f"gc: {verb} {len(collected.removed)} run folders ({_size(total)}) of runs that "
          f"ended before {result.cutoff} ({result.source} {result.older_than}); the journal "
          "and run records stay")
    if collected.kept_open:
        print(f"gc: kept {collected.kept_open} folders of runs that may still be resumed or "
              "wait for an approval")
    if collected.kept_unknown:
        print(f"gc: kept {collected.kept_unknown} folders of runs this state store has no "
              "record of")
    return EXIT_OK


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    return f"{count / 1024:.1f} KB" if count < 1024 ** 2 else f"{count / 1024 ** 2:.1f} MB"


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
        print(f"{lock.env:<10} run {lock.run_id}  by {shown(lock.user)}  since {lock.since}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    if args.action == "sign-head":
        return _sign_head(args)
    if args.action == "verify":
        return _verify(args)
    if not args.run:
        raise InvalidInput("runbook audit export needs --run RUN_ID")
    from engine.views import present, present_record

    record = api.change_record(run_id=args.run)
    plan_text = present.plan_text(record.plan) if record.plan is not None else None
    if args.format == "html":
        from engine.views import present_record_html

        text = present_record_html.record_html(record, plan_text)
    else:
        text = present_record.markdown(record, plan_text)
    if args.file:
        with open(args.file, "w") as fh:
            fh.write(text)
        print(f"wrote {args.file}")
    else:
        print(text, end="")
    return EXIT_OK

def _verify(args: argparse.Namespace) -> int:
    from engine import api

    verdict, anchor = api.verify_journal(head=args.head, allowed_signers=args.allowed_signers,
                                         key=args.key, expect_records=args.expect_records)
    more = verdict.problem_count - len(verdict.problems)
    if args.output == "json":
        _emit({"records": verdict.records, "head": verdict.head or None,
               "intact": verdict.intact, "problems": verdict.problems,
               "problem_count": verdict.problem_count,
               "anchor": None if anchor is None else {
                   "file": anchor.path, "records": anchor.head.records,
                   "head": anchor.head.head, "at": anchor.head.at,
                   "signed_by": anchor.signer or None,
                   "records_after": verdict.after_anchor}})
        return EXIT_OK if verdict.intact else EXIT_STEP_FAILED
    # With --print-head, standard output is the head alone (`> head.txt`).
    report = sys.stderr if args.print_head else sys.stdout
    for problem in verdict.problems:
        print(f"journal: {problem}", file=report)
    if more:
        print(f"journal: and {more} more problems", file=report)
    if not verdict.intact:
        print(f"journal damaged: {verdict.records} records, head {verdict.head or '-'}",
              file=report)
        return EXIT_STEP_FAILED
    print(f"journal intact: {verdict.records} records, head {verdict.head or '-'}",
          file=report)
    if anchor is not None:
        signed = f"signed by {anchor.signer}" if anchor.signer else "unsigned"
        print(f"head {anchor.path} ({signed}, {anchor.head.at}): record "
              f"{anchor.head.records} is where it was; {verdict.after_anchor} records "
              "came after it", file=report)
    if args.print_head:
        if not verdict.records:
            raise InvalidInput("the journal has no records: there is no head to print")
        from engine.trust.journal_head import Head

        print(Head(verdict.first, verdict.last_seq, verdict.head, _now()).text(), end="")
    return EXIT_OK


def _now() -> str:
    from datetime import UTC, datetime

    from engine.clock import iso

    return iso(datetime.now(UTC))


def _sign_head(args: argparse.Namespace) -> int:
    from engine import api

    if not args.key:
        raise InvalidInput("runbook audit sign-head needs --key KEY (an SSH private key, or "
                           "a public key whose private half the ssh-agent holds)")
    head = api.sign_head(key=args.key, file=args.file)
    if args.output == "json":
        _emit({"records": head.records, "head": head.head, "store": head.store,
               "at": head.at, "file": args.file, "text": head.file_text()})
    elif args.file:
        print(f"signed the journal head: record {head.records}, head {head.head}; "
              f"wrote {args.file}")
    else:
        print(head.file_text(), end="")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "list": cmd_list, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan,
    "run": cmd_run, "resume": cmd_resume, "status": cmd_status, "approve": cmd_approve,
    "abort": cmd_abort, "schema": cmd_schema, "history": cmd_history, "sandbox": cmd_sandbox,
    "lock": cmd_lock, "audit": cmd_audit, "drift": cmd_drift, "completion": cmd_completion,
    "store": cmd_store, "gc": cmd_gc, "board": cmd_board,
}
