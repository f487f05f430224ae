"""Shell completion (bash, zsh, fish) through argcomplete: subcommands, runbook names, each
runbook's params, environment names from the inventory and run ids from the state store.

The shell runs ``runbook`` with ``_ARGCOMPLETE`` set on every Tab, so this must be quick and
must never fail loudly: a completer that cannot read its source (a broken runbook, state file
or inventory) offers nothing rather than an error.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable, Iterable
from typing import Any

# A param whose value is an environment of the inventory, by its name: `--env`, `--from`,
# `--to`, `--target-env` ... (the runbooks check the value against the inventory anyway).
ENV_PARAMS = frozenset({"env", "environment", "from", "to"})
RUN_ID_COMMANDS = ("status", "resume", "abort", "approve")
# Options of run/plan that take a value: skipped when looking for the runbook's name.
_VALUED = ("--inventory", "--output")

Completer = Callable[..., Iterable[str]]


def script(shell: str) -> str:
    """The code a shell sources to complete ``runbook``."""
    from argcomplete.shell_integration import shellcode

    return shellcode(["runbook"], shell=shell)


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit (argcomplete's way)."""
    import argcomplete

    _attach(parser, os.environ.get("COMP_LINE", "")[:int(os.environ.get("COMP_POINT") or 0)])
    argcomplete.autocomplete(parser)


def is_env_param(name: str) -> bool:
    return name in ENV_PARAMS or name.endswith(("_env", "-env"))


def _attach(parser: argparse.ArgumentParser, line: str) -> None:
    subcommands = _subparsers(parser)
    for name in RUN_ID_COMMANDS:
        _set(subcommands[name], "run_id", _quiet(_run_ids))
    _set(subcommands["audit"], "run", _quiet(_run_ids))
    for name in ("drift", "history", "lock"):
        _set(subcommands[name], "env", _quiet(_environments))
    _set(subcommands["history"], "kind", _quiet(_history_kinds))
    for name in ("run", "plan"):
        _set(subcommands[name], "name", _quiet(_runbook_names))
        _set(subcommands[name], "inventory", _quiet(_inventory_names))
    _set(subcommands["drift"], "inventory", _quiet(_inventory_names))
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote: complete without the params
        return
    if len(words) >= 3 and words[1] in ("run", "plan"):
        _add_params(subcommands[words[1]], words[1], _runbook_word(words[2:]))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _set(parser: argparse.ArgumentParser, dest: str, completer: Completer) -> None:
    for action in parser._actions:
        if action.dest == dest:
            action.completer = completer  # type: ignore[attr-defined]


def _runbook_word(words: list[str]) -> str | None:
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _VALUED:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _add_params(sub: argparse.ArgumentParser, command: str, name: str | None) -> None:
    """The runbook's params as options of ``runbook run NAME``, for argcomplete to offer."""
    if name is None:
        return
    from engine.cli.parser import add_params

    try:
        from engine import api

        book = api.load_runbook(name)
    except Exception:  # a runbook that does not load offers no params
        return
    for param, action in add_params(sub, book, dest_prefix="param:"):
        if param.enum:
            values = [str(v) for v in param.enum]
            action.completer = lambda values=values, **kw: values  # type: ignore[attr-defined]
        elif param.type != "boolean" and is_env_param(param.name):
            action.completer = _quiet(  # type: ignore[attr-defined]
                lambda parsed_args, book=book, **kw: _environments(parsed_args, book.inventory))


def _quiet(completer: Completer) -> Callable[..., list[str]]:
    def safe(**kwargs: Any) -> list[str]:
        try:
            return list(completer(**kwargs))
        except Exception:  # a broken source: nothing to offer, and no noise on the prompt
            return []
    return safe


def _run_ids(prefix: str = "", **kwargs: Any) -> Iterable[str]:
    from engine.store import open_store

    with open_store(readonly=True) as store:
        return [r.id for r in store.list_runs(200) if r.id.startswith(prefix)]


def _history_kinds(prefix: str = "", **kwargs: Any) -> Iterable[str]:
    from engine import api

    return [k for k in api.history_kinds() if k.startswith(prefix)]


def _runbook_names(**kwargs: Any) -> Iterable[str]:
    from engine.language import loader

    return list(loader.list_names("runbooks"))


def _inventory_names(**kwargs: Any) -> Iterable[str]:
    from engine.language import loader

    return list(loader.list_names("inventories"))


def _environments(parsed_args: argparse.Namespace | None = None, fallback: str | None = None,
                  **kwargs: Any) -> Iterable[str]:
    """The environments of the inventory the command line names, else $RUNBOOK_INVENTORY,
    else the runbook's own, else the only inventory there is."""
    from engine.language import loader

    known = loader.list_names("inventories")
    only = next(iter(known)) if len(known) == 1 else None
    name = getattr(parsed_args, "inventory", None) or os.environ.get("RUNBOOK_INVENTORY") \
        or fallback or only
    if not name:
        return []
    doc = loader.load(loader.resolve(name, "inventories"), "Inventory")
    return list(doc.data.get("environments") or {})
