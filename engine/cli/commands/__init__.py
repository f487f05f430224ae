"""What each ``runbook`` subcommand does: turn parsed arguments into an ``api`` call, print
the result, return the exit code; one module per group of commands. Heavy modules are
imported inside the handlers."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from engine.cli.commands.audit import cmd_audit, cmd_gc, cmd_store
from engine.cli.commands.records import cmd_board, cmd_drift, cmd_history, cmd_lock, cmd_sandbox
from engine.cli.commands.runbooks import (
    cmd_completion,
    cmd_list,
    cmd_schema,
    cmd_show,
    cmd_validate,
    param_parser,
    taken_flags,
)
from engine.cli.commands.runs import (
    cmd_abort,
    cmd_approve,
    cmd_plan,
    cmd_resume,
    cmd_run,
    cmd_status,
)

__all__ = ["COMMANDS", "param_parser", "taken_flags"]

COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "list": cmd_list, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan,
    "run": cmd_run, "resume": cmd_resume, "status": cmd_status, "approve": cmd_approve,
    "abort": cmd_abort, "schema": cmd_schema, "history": cmd_history, "sandbox": cmd_sandbox,
    "lock": cmd_lock, "audit": cmd_audit, "drift": cmd_drift, "completion": cmd_completion,
    "store": cmd_store, "gc": cmd_gc, "board": cmd_board,
}
