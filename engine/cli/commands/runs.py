"""The commands that plan, run, resume, approve and abort a run, and show its status."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from engine.errors import EXIT_OK, EXIT_STEP_FAILED, InvalidInput, exit_code
from engine.status import RunStatus

if TYPE_CHECKING:
    from engine.run.report import Reporter
    from engine.trust.signatures import Signing
from engine.cli.commands.common import emit, reply
from engine.cli.commands.runbooks import named, params_from, runbook_help


def cmd_plan(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present

    command = "run" if getattr(args, "dry_run", False) else "plan"
    if args.help:
        print(runbook_help(command, args.name))
        return EXIT_OK
    name = named(args, command)
    book = api.load_runbook(name)
    params = params_from(book, command, extra)
    report = api.plan(runbook=book, params=params, inventory=args.inventory,
                      accept_drift=args.accept_drift)
    if args.output == "json":
        emit(present.plan_dict(report))
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
        print(runbook_help("run", args.name))
        return EXIT_OK
    name = named(args, "run")
    book = api.load_runbook(name)
    params = params_from(book, "run", extra)
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
        emit({**present.result_dict(result), "exit_code": code,
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
        reply(args.output, [asdict(r) for r in found], present.runs_table(found))
    else:
        reply(args.output, present.detail_dict(found), present.detail_text(found))
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
        emit([asdict(a) for a in approvals])
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


def cmd_abort(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    result = api.abort(run_id=args.run_id, by=args.by)
    record = result.run
    if args.output == "json":
        emit({**asdict(record), "holder": result.holder, "stopped": result.stopped})
    elif result.stopped:
        print(f"run {record.id} {record.status}"
              + (f"; process {result.holder} stopped" if result.holder else ""))
    else:
        print(f"run {record.id} {record.status}; process {result.holder} has not stopped "
              f"after {api.ABORT_WAIT:g} s: its lock is released when it does",
              file=sys.stderr)
        return EXIT_STEP_FAILED
    return EXIT_OK
