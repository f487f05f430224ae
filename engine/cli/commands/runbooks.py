"""The commands about runbooks themselves: list, show, validate, schema, completion; and
how a runbook's params become options of ``run`` and ``plan``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from engine.cli.parser import Parser, add_params, add_run_options, engine_flags
from engine.errors import EXIT_INVALID, EXIT_OK, InvalidInput

if TYPE_CHECKING:
    from engine.language.model import Runbook
from engine.cli.commands.common import emit, reply


def param_parser(book: Runbook, command: str = "run") -> Parser:
    """The options a runbook's params add to ``runbook run NAME``."""
    parser = Parser(prog=f"runbook {command} {book.name}", add_help=False)
    add_params(parser, book)
    return parser


def taken_flags() -> frozenset[str]:
    """The engine's own options of ``run`` and ``plan``: no param may be given as one."""
    return engine_flags("run") | engine_flags("plan")


def params_from(book: Runbook, command: str, extra: list[str]) -> dict[str, Any]:
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


def runbook_help(command: str, name: str | None) -> str:
    """``runbook run --help``: the runbooks; ``runbook run NAME --help``: its params."""
    from engine import api
    from engine.views import present

    if name is not None:
        book = api.load_runbook(name)
        shown_params = []
        for p in book.params:
            if p.secret:
                continue
            value = "STRING…" if p.type == "list" else p.type.upper()
            flag = "/".join(p.flags) if p.type == "boolean" else f"{p.flag} {value}"
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


def named(args: argparse.Namespace, command: str) -> str:
    if args.name is None:
        raise InvalidInput(f"runbook {command}: give a runbook NAME "
                           f"(runbook {command} --help lists them)")
    return str(args.name)


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    rows = _runbook_rows()
    reply(args.output, rows, "\n".join(f"{row['name']:<16} {row['description']}" for row in rows))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api
    from engine.views import present

    book = api.load_runbook(args.name)
    reply(args.output, present.runbook_dict(book), present.runbook_text(book))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    results = api.validate(args.paths, taken_flags=taken_flags())
    bad = [(t, e) for t, e in results if e is not None]
    if args.output == "json":
        emit([{"path": t, "valid": e is None, "error": str(e) if e else None}
               for t, e in results])
    else:
        for target, error in results:
            if error is None:
                print(f"ok: {target}")
            else:
                print(f"runbook: error: {error}", file=sys.stderr)
    return EXIT_INVALID if bad else EXIT_OK


def cmd_schema(args: argparse.Namespace, extra: list[str]) -> int:
    from engine.language import schema

    # The shipped file as it is, so that saving the output gives the file editors point at.
    print(schema.schema_text(args.kind), end="")
    return EXIT_OK


def cmd_completion(args: argparse.Namespace, extra: list[str]) -> int:
    from engine.cli import completion

    print(completion.script(args.shell), end="")
    return EXIT_OK
