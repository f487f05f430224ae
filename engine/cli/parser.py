"""An argparse parser whose errors are invalid input (exit 2, one line), not a usage dump,
and that never takes an abbreviation of an option for the option: ``--out`` is not
``--output``, so a runbook param may be named ``out``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

from engine.errors import InvalidInput

if TYPE_CHECKING:
    from engine.language.model import Param, Runbook


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message}")


def add_run_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The engine's own options of ``run`` and ``plan``: the one place they are declared, so
    that a runbook param that would shadow one of them is found (see ``engine_flags``)."""
    parser.add_argument("-h", "--help", action="store_true",
                        help="without NAME: the runbooks; with NAME: its params")
    parser.add_argument("--inventory", help="inventory name or path")
    # plan --output html: one page for the CAB's review before approval
    parser.add_argument("--output", default="text",
                        choices=("text", "json", "markdown", *(("html",) if command == "plan"
                                                               else ())))
    # An option of the engine, not a param: what drift means is the same for every runbook.
    parser.add_argument("--accept-drift", action="store_true",
                        help="go on although an environment it changes has drifted (recorded)")
    if command == "run":
        parser.add_argument("--dry-run", action="store_true", help="same as runbook plan")


def engine_flags(command: str) -> frozenset[str]:
    """Every option string ``runbook COMMAND`` takes itself (``--inventory``, ``-h``, ...)."""
    parser = Parser(add_help=False)
    add_run_options(parser, command)
    return frozenset(s for action in parser._actions for s in action.option_strings)


def add_params(parser: argparse.ArgumentParser, book: Runbook, dest_prefix: str = ""
               ) -> list[tuple[Param, argparse.Action]]:
    """A runbook's params as options (a boolean is a switch, ``--x``/``--no-x``); secret
    params are given in the environment only."""
    added = []
    for param in book.params:
        if param.secret:
            continue
        if param.type == "boolean":
            action = parser.add_argument(param.flag, dest=dest_prefix + param.name, default=None,
                                         action=argparse.BooleanOptionalAction,
                                         help=param.description)
        elif param.type == "list":
            action = parser.add_argument(param.flag, dest=dest_prefix + param.name,
                                         action="append", metavar="STRING",
                                         help=f"{param.description} (repeatable)")
        else:
            action = parser.add_argument(param.flag, dest=dest_prefix + param.name,
                                         metavar=param.type.upper(), help=param.description)
        added.append((param, action))
    return added
