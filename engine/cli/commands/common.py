"""What the command handlers share: an answer as JSON or as text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def reply(output: str, data: Any, text: str) -> None:
    """The answer of a command: ``data`` as JSON with ``--output json``, else ``text``."""
    if output == "json":
        emit(data)
    else:
        print(text)
