"""Who claims to act, and how what people typed is shown.

A name (``RUNBOOK_USER``, the login name, ``--by``) is a claim, not an authentication: it is
held to the inventory's ``people`` exactly as listed, refused if it holds characters a
terminal would not print as themselves (escape codes could make it display as someone
else), and every journal record also carries the OS user and host that made it, so a
borrowed name can be traced afterwards.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from functools import cache
from typing import Any

from engine.errors import InvalidInput


def shown(text: Any, *, keep_newlines: bool = False) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\u202e``), so what
    a person typed cannot move the cursor, recolour or rewrite what is around it."""
    out = []
    for ch in str(text):
        if ch.isprintable() or (keep_newlines and ch == "\n"):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def check_name(name: str, where: str) -> str:
    """``name`` if it can stand for a person: not empty, every character printable."""
    if not name:
        raise InvalidInput(f"{where}: a name is needed")
    if not name.isprintable():
        raise InvalidInput(f"{where}: the name '{shown(name)}' holds control or "
                           "non-printable characters")
    return name


def check_person(name: str, inventory: Mapping[str, Any], where: str) -> str:
    """``name`` if it is one of the inventory's people (exactly, no case folding). An
    inventory that lists no people puts no one's name to the test."""
    check_name(name, where)
    people = inventory.get("people") or {}
    if people and name not in people:
        raise InvalidInput(f"{where}: {name} is not among the inventory's people "
                           f"({', '.join(sorted(people))})")
    return name


def check_starter(name: str, inventory: Mapping[str, Any], where: str) -> str:
    """Who starts a run: one of the people, unless the inventory says anyone may start."""
    if inventory.get("anyone_may_start"):
        return check_name(name, where)
    return check_person(name, inventory, where)


def login_name() -> str:
    """The OS user of this process, from its uid (not from variables anyone can set)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return getpass.getuser()


def claimed() -> str:
    """The name this process claims: ``RUNBOOK_USER``, else the login name."""
    return os.environ.get("RUNBOOK_USER") or login_name()


@cache
def origin() -> dict[str, str]:
    """The OS user and host making a record, stored beside the name it claims."""
    return {"os_user": login_name(), "host": socket.gethostname()}
