"""Regular expressions written by runbook authors, evaluated with a time limit.

A param's ``pattern`` and the ``regex_search``/``regex_replace`` template filters run patterns
from a runbook against values from the command line or a command's output. Python's ``re`` can
backtrack for hours on a pattern such as ``(a|aa)+$``; the ``regex`` module stops a match
after ``TIMEOUT`` seconds, which turns such a pattern into an error instead of a hang.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from engine.errors import InvalidInput

# A sane pattern matches a param or a command's output in microseconds to milliseconds.
TIMEOUT = 0.25


@lru_cache(maxsize=512)
def compiled(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern; InvalidInput if it is not a valid regular expression."""
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise InvalidInput(f"invalid regular expression {pattern!r}: {exc}") from None


def fullmatch(pattern: str, text: str) -> bool:
    try:
        return compiled(pattern).fullmatch(text, timeout=TIMEOUT) is not None
    except TimeoutError:
        raise _too_slow(pattern) from None


def search(pattern: str, text: str) -> str | None:
    try:
        found = compiled(pattern).search(text, timeout=TIMEOUT)
    except TimeoutError:
        raise _too_slow(pattern) from None
    return found.group(0) if found else None


def sub(pattern: str, replacement: str, text: str) -> str:
    try:
        return str(compiled(pattern).sub(replacement, text, timeout=TIMEOUT))
    except TimeoutError:
        raise _too_slow(pattern) from None
    except (regex.error, IndexError) as exc:  # a replacement naming a group that is not there
        raise InvalidInput(f"invalid replacement {replacement!r} for {pattern!r}: {exc}") \
            from None


def _too_slow(pattern: str) -> InvalidInput:
    return InvalidInput(f"the regular expression {pattern!r} took more than {TIMEOUT:g} s "
                        "(catastrophic backtracking); simplify it")
