"""``runbook`` on the command line: parse arguments, call ``api``, print, return an exit code.

Heavy modules (jinja2, jsonschema, rich, ansible, boto3, kubernetes) are imported inside the
commands that need them, so ``runbook --help`` starts fast.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence

from engine.cli.commands import COMMANDS
from engine.cli.parser import Parser, add_run_options
from engine.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STEP_FAILED,
    InvalidInput,
    RunbookError,
)
from engine.system import interrupts
from engine.system.identity import shown

EPILOG = """exit codes: 0 done, 1 a step failed (drift: environments disagree), 2 invalid input
or a drifted environment, 3 waiting for an approval, 4 blocked by a lock held by another run,
130 interrupted, 141 the output's reader went away (as `| head`)"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="runbook", description="Run release procedures as checked, "
                     "resumable, auditable runbooks.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    out = Parser(add_help=False)
    out.add_argument("--output", choices=("text", "json"), default="text")

    sub.add_parser("list", parents=[out], help="list the runbooks")
    p = sub.add_parser("show", parents=[out], help="a runbook's params and steps")
    p.add_argument("name")
    p = sub.add_parser("validate", parents=[out], help="check runbooks without running them")
    p.add_argument("paths", nargs="*", metavar="PATH")
    for name, helptext in (("plan", "render the plan and dry-run it; changes nothing"),
                           ("run", "run a runbook: runbook run NAME --PARAM VALUE ...")):
        p = sub.add_parser(name, help=helptext, add_help=False)
        # Optional so that `runbook run --help` can list the runbooks.
        p.add_argument("name", nargs="?")
        add_run_options(p, name)
    p = sub.add_parser("resume", help="continue a stopped run")
    p.add_argument("run_id")
    # markdown as for run: the outcome and what to do next, for a CI job's summary
    p.add_argument("--output", choices=("text", "json", "markdown"), default="text")
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
    p.add_argument("--ticket", default="", help="the change ticket, such as CHG-123 "
                   "(a gate with required_ticket refuses an approval without one)")
    p.add_argument("--note", default="")
    p.add_argument("--sign", nargs="?", const="", metavar="KEY",
                   help="sign the approval with your SSH key: a private key file, or a public "
                   "key file whose private half is in the ssh-agent (default: the first of "
                   "your keys in the inventory found as ~/.ssh/id_* or in the agent)")
    p.add_argument("--signature", metavar="FILE", help="a signature made elsewhere over "
                   "the payload (--payload), with ssh-keygen -Y sign -n runbook-approval; "
                   "give the same --at")
    p.add_argument("--at", metavar="TIME", help="the approval's time, as the payload "
                   "signed elsewhere says it (ISO 8601; default: now)")
    p.add_argument("--payload", action="store_true", help="print what to sign for this "
                   "approval (with --at), record nothing")
    p = sub.add_parser("abort", parents=[out], help="stop a run for good")
    p.add_argument("run_id")
    p.add_argument("--by")
    p = sub.add_parser("drift", parents=[out],
                       help="whether each environment's overlay, cluster and history agree")
    p.add_argument("--env")
    p.add_argument("--inventory", help="inventory name or path")
    p = sub.add_parser("board", parents=[out], help="each environment: what it runs, since "
                       "when, drift, last run, lock, runs waiting for approvals")
    p.add_argument("--inventory", help="inventory name or path")
    p.add_argument("--html", metavar="FILE", help="write the board as one HTML page")
    p.add_argument("--no-cluster", action="store_true",
                   help="only what the store records: read no cluster (no drift shown)")
    p.add_argument("--serve", action="store_true",
                   help="serve the page on 127.0.0.1, read again at each request")
    p.add_argument("--port", type=int, default=8765, help="with --serve (default 8765)")
    p.add_argument("--refresh", type=int, default=30, metavar="SECONDS",
                   help="with --serve: the page reloads itself this often (default 30)")
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
                       help="the hash-chained journal: verify | export --run RUN_ID | "
                       "sign-head --key KEY")
    p.add_argument("action", choices=("verify", "export", "sign-head"))
    p.add_argument("--run")
    p.add_argument("--file", help="write the change record (or the signed head) here "
                   "instead of printing it")
    p.add_argument("--head", metavar="FILE",
                   help="verify: the journal still ends at or goes on from this head")
    p.add_argument("--allowed-signers", metavar="FILE",
                   help="verify --head: who may sign heads (ssh-keygen's allowed_signers)")
    p.add_argument("--key", metavar="KEY",
                   help="sign-head: the SSH key to sign with; verify --head: the public key "
                   "that signed it")
    p.add_argument("--expect-records", type=int, metavar="N",
                   help="verify: the journal holds at least N records")
    p.add_argument("--print-head", action="store_true",
                   help="verify: print the head (unsigned) if the journal is intact")
    p.add_argument("--full", action="store_true",
                   help="verify: every record, not only those after the last verification "
                   "that found the journal intact")
    p.add_argument("--format", choices=("markdown", "html"), default="markdown",
                   help="of the change record (html: one printable page)")
    p = sub.add_parser("store", parents=[out],
                       help="the state store: migrate (to this engine's schema version), "
                       "check (all of it, however long that takes)")
    p.add_argument("action", choices=("migrate", "check"))
    p = sub.add_parser("gc", parents=[out],
                       help="remove the artifacts folders of runs that ended long ago "
                       "(the journal and the run records stay)")
    p.add_argument("--older-than", metavar="DURATION",
                   help="such as 90d (m, h, d or w); default: the inventory's "
                   "retention.artifacts")
    p.add_argument("--inventory", help="inventory name or path, for its retention setting")
    p.add_argument("--dry-run", action="store_true", help="list them; remove nothing")
    p = sub.add_parser("schema", parents=[out],
                       help="print the JSON Schema of runbooks, fragments or inventories")
    p.add_argument("kind", nargs="?", default="runbook",
                   choices=("runbook", "fragment", "inventory"))
    p = sub.add_parser("completion", help="print the shell completion script: "
                       'eval "$(runbook completion bash)"')
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and "_ARGCOMPLETE" in os.environ:  # the shell asks for completions
        from engine.cli import completion

        completion.complete(build_parser())  # exits
    # SIGTERM (from a service manager, or from `runbook abort` in another shell) stops a
    # run as Ctrl-C does.
    try:
        with interrupts.handled():
            code = _main(list(sys.argv[1:] if argv is None else argv))
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
    except BrokenPipeError:
        # The reader went away (`runbook history | head -1`): end quietly, as a tool killed
        # by SIGPIPE does. What is left buffered goes to /dev/null, so that the flush at exit
        # does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def command() -> int:
    """The ``runbook`` command (and ``python -m engine``): ``main``, then an exit that does not
    walk every object the command made. What is left when a command ends is the interpreter's
    own teardown, whose last garbage collection costs about 30 ms after a run; objects frozen
    out of it are still released with their modules, only cycles among them are not looked
    for (files, the store and the workers are closed before ``main`` returns)."""
    code = main()
    gc.freeze()
    return code


def _main(args_list: list[str]) -> int:
    output = "text"
    try:
        parser = build_parser()
        if not args_list or args_list[0] in ("-h", "--help"):
            parser.print_help()
            return EXIT_OK
        args, extra = parser.parse_known_args(args_list)
        output = getattr(args, "output", "text")
        if extra and args.command not in ("plan", "run"):
            raise InvalidInput(f"unrecognized arguments: {' '.join(extra)}")
        return COMMANDS[args.command](args, extra)
    except RunbookError as exc:
        _error(str(exc), exc.exit_code, output)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted", EXIT_INTERRUPTED, output)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug or a broken environment: one line, the trace on demand
        if os.environ.get("RUNBOOK_DEBUG"):
            raise
        _error(f"unexpected error: {type(exc).__name__}: {exc} (RUNBOOK_DEBUG=1 shows where)",
               EXIT_STEP_FAILED, output)
        return EXIT_STEP_FAILED


def _error(message: str, code: int, output: str) -> None:
    message = " ".join(message.splitlines())  # one line, whatever a template or value held
    if output == "json":
        print(json.dumps({"error": message, "exit_code": code}))
    else:  # a message may quote what someone typed: never let it steer the terminal
        print(f"runbook: error: {shown(message)}", file=sys.stderr)
