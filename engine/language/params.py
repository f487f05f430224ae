"""Turn the values given on the command line into the typed params a runbook declares.

Every value is checked as its type means before anything is recorded: a number is finite and
within the param's ``minimum``/``maximum``, a string matches its ``pattern`` (with a time
limit, see ``patterns``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from engine.errors import InvalidInput
from engine.language import patterns
from engine.language.model import Param, Runbook

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
# ASCII digits only, and few enough of them to be a count, a revision or a size: int() alone
# would also take '1_000', '٣' and 4300-digit numbers.
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_SHOWN = 40  # characters of a refused value quoted back in the error


def secret_env_name(param: Param) -> str:
    return "RUNBOOK_SECRET_" + re.sub(r"[^A-Z0-9]", "_", param.name.upper())


def check_flags(runbook: Runbook, taken: Collection[str], command: str = "run") -> None:
    """Refuse a param whose option would be one of the engine's own (``taken``, such as
    ``--output``) or another param's: the command line could not tell them apart."""
    seen: dict[str, Param] = {}
    for param in runbook.params:
        if param.secret:
            continue  # given in the environment, never as an option
        for flag in param.flags:
            if flag in taken:
                raise InvalidInput(f"param {param.name!r} ({flag}) collides with the engine's "
                                   f"own option {flag} of runbook {command}: rename the param",
                                   file=str(runbook.path), line=param.line)
            other = seen.get(flag)
            if other is not None:
                raise InvalidInput(f"params {other.name!r} and {param.name!r} are both "
                                   f"given as {flag}: rename one", file=str(runbook.path),
                                   line=param.line)
            seen[flag] = param


def coerce(runbook: Runbook, given: Mapping[str, Any],
           environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate ``given`` against the runbook's params; fill defaults and secrets."""
    environ = os.environ if environ is None else environ
    src = str(runbook.path)
    known = {p.name for p in runbook.params}
    for name in given:
        if name not in known:
            flags = ", ".join(p.flag for p in runbook.params) or "none"
            raise InvalidInput(f"unknown param --{name.replace('_', '-')} "
                               f"(runbook {runbook.name} takes: {flags})", file=src)
    values: dict[str, Any] = {}
    for param in runbook.params:
        if param.secret:
            if param.name in given:
                raise InvalidInput(f"{param.flag} is a secret: set it in the environment as "
                                   f"{secret_env_name(param)}, not on the command line", file=src)
            raw = environ.get(secret_env_name(param))
        else:
            raw = given.get(param.name)
        if raw is None:
            if param.default is not None:
                values[param.name] = param.default
            elif param.type == "boolean":
                values[param.name] = False  # a switch not given is off
            elif param.required:
                how = secret_env_name(param) if param.secret else f"{param.flag} VALUE"
                raise InvalidInput(f"missing required param {param.flag} (give {how})", file=src)
            continue
        if param.type == "list":
            items = [check(param, item, src) for item in
                     (raw if isinstance(raw, list | tuple) else [raw])]
            if items:
                values[param.name] = list(dict.fromkeys(items))  # each once, in order
            elif param.required:
                raise InvalidInput(f"missing required param {param.flag} (give "
                                   f"{param.flag} VALUE)", file=src)
            continue
        values[param.name] = check(param, raw, src)
    return values


def check(param: Param, raw: Any, src: str) -> Any:
    value = _typed(param, raw, src)
    shown = "(secret)" if param.secret else _show(value)
    if param.enum and value not in param.enum:
        choices = ", ".join(str(c) for c in param.enum)
        raise InvalidInput(f"{param.flag} {shown} is not one of: {choices}", file=src)
    if param.minimum is not None and value < param.minimum:
        raise InvalidInput(f"{param.flag} {shown} is below the minimum {param.minimum}",
                           file=src)
    if param.maximum is not None and value > param.maximum:
        raise InvalidInput(f"{param.flag} {shown} is above the maximum {param.maximum}",
                           file=src)
    if param.pattern:
        try:
            matched = patterns.fullmatch(param.pattern, str(value))
        except InvalidInput as exc:
            raise InvalidInput(f"{param.flag}: {exc.message}", file=src) from exc
        if not matched:
            raise InvalidInput(f"{param.flag} {shown} does not match {param.pattern!r}",
                               file=src)
    return value


def _typed(param: Param, raw: Any, src: str) -> Any:
    def refuse(expected: str) -> InvalidInput:
        got = "" if param.secret else f", got {_show(raw)}"
        return InvalidInput(f"{param.flag} expects {expected}{got}", file=src)

    if param.type in ("integer", "number"):
        if isinstance(raw, bool):
            raise refuse("an integer" if param.type == "integer" else "a number")
        if param.type == "integer":
            return _integer(raw, refuse)
        return _number(raw, refuse)
    if param.type == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise refuse("true or false")
    return str(raw)


def _integer(raw: Any, refuse: Callable[[str], InvalidInput]) -> int:
    if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        raw = int(raw)  # a value stored as JSON by an earlier run
    if isinstance(raw, int) and abs(raw) < 10**18:
        return raw
    text = str(raw).strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    raise refuse("an integer of at most 18 digits" if re.fullmatch(r"[+-]?[0-9]+", text)
                 else "an integer")


def _number(raw: Any, refuse: Callable[[str], InvalidInput]) -> int | float:
    if isinstance(raw, int | float):
        number = float(raw)
    elif isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
        number = float(raw.strip())
    else:
        raise refuse("a finite number")
    if not math.isfinite(number):  # nan compares false with every bound, inf passes a minimum
        raise refuse("a finite number")
    return int(number) if number.is_integer() else number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
