"""Turn the values given on the command line into the typed params a runbook declares."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidInput
from engine.model import Param, Runbook

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def secret_env_name(param: Param) -> str:
    return "RUNBOOK_SECRET_" + re.sub(r"[^A-Z0-9]", "_", param.name.upper())


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
            elif param.required:
                how = secret_env_name(param) if param.secret else f"{param.flag} VALUE"
                raise InvalidInput(f"missing required param {param.flag} (give {how})", file=src)
            continue
        values[param.name] = check(param, raw, src)
    return values


def check(param: Param, raw: Any, src: str) -> Any:
    value = _typed(param, raw, src)
    shown = "(secret)" if param.secret else repr(value)
    if param.enum and value not in param.enum:
        choices = ", ".join(str(c) for c in param.enum)
        raise InvalidInput(f"{param.flag} {shown} is not one of: {choices}", file=src)
    if param.pattern and not re.fullmatch(param.pattern, str(value)):
        raise InvalidInput(f"{param.flag} {shown} does not match {param.pattern!r}", file=src)
    return value


def _typed(param: Param, raw: Any, src: str) -> Any:
    if param.type == "integer":
        if isinstance(raw, bool):
            raise InvalidInput(f"{param.flag} expects an integer", file=src)
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise InvalidInput(f"{param.flag} expects an integer, got {raw!r}", file=src) from None
    if param.type == "number":
        if isinstance(raw, bool):
            raise InvalidInput(f"{param.flag} expects a number", file=src)
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise InvalidInput(f"{param.flag} expects a number, got {raw!r}", file=src) from None
        return int(number) if number.is_integer() else number
    if param.type == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise InvalidInput(f"{param.flag} expects true or false, got {raw!r}", file=src)
    return str(raw)
