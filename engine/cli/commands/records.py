"""The commands that show what the store and the clusters say: history, board, drift,
locks; and the sandbox."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from engine.errors import EXIT_OK, EXIT_STEP_FAILED, InvalidInput
from engine.system.identity import shown

if TYPE_CHECKING:
    pass
from engine.cli.commands.common import emit, reply


def cmd_history(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    records = api.history(env=args.env, kind=args.kind, limit=args.limit)
    if args.output == "json":
        emit([asdict(r) for r in records])
        return EXIT_OK
    if not records:
        print("nothing recorded matches" if args.env or args.kind else "no history yet")
    from engine.views import present

    for line in present.history_text(records):
        print(line)
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
    board = api.board(inventory=args.inventory, cluster=not args.no_cluster)
    if args.html:
        with open(args.html, "w") as fh:
            fh.write(present_board.board_html(board))
        print(f"wrote {args.html}", file=sys.stderr)
    else:
        reply(args.output, present_board.board_dict(board), present_board.board_text(board))
    return EXIT_OK


def cmd_drift(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present

    found = api.drift(env=args.env, inventory=args.inventory)
    reply(args.output, [d.as_dict() for d in found], present.drift_text(found))
    return EXIT_OK if all(d.agrees for d in found) else EXIT_STEP_FAILED


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
        emit([asdict(lock) for lock in held])
    elif not held:
        print("no environment is locked")
    for lock in held if args.output != "json" else []:
        print(f"{lock.env:<10} run {lock.run_id}  by {shown(lock.user)}  since {lock.since}")
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
        emit(sandbox.shown(info))
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
