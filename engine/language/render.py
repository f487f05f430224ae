"""Sandboxed Jinja2 with StrictUndefined, as pure functions over a context mapping.

A value that is a single ``{{ expression }}`` keeps its native type (a number stays a number);
any other string renders to a string. Results that do not exist yet (registered by steps that
have not run) are ``Pending``: touching one raises ``Deferred`` so the caller can decide the
value at run time instead of failing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range

from engine.errors import InvalidInput
from engine.language import patterns, services

if TYPE_CHECKING:
    from engine.language.model import Runbook

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)
# A template's arithmetic may not build a string or list longer than MAX_SIZE, nor an integer
# of more than MAX_BITS bits: 9 ** 9 ** 9 or 'x' * 10 ** 9 would hold the engine for minutes
# (and the compiler folds constant expressions, so even checking the syntax would).
MAX_SIZE = 1_000_000
MAX_BITS = 65_536
# Errors that a template's own evaluation raises (1 / 0, 'a' + 1, range(10 ** 9), a macro
# calling itself forever): bad input, like an undefined name.
_EVALUATION_ERRORS = (ArithmeticError, TypeError, ValueError, LookupError, RecursionError)
_SEQUENCE = (str, list, tuple)


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _integer(left) and _integer(right) and abs(left) > 1 \
                and right * abs(left).bit_length() > MAX_BITS:
            raise SecurityError(f"{left} ** {right} is too large a number")
        if operator == "*":
            seq, times = (left, right) if isinstance(left, _SEQUENCE) else (right, left)
            if isinstance(seq, _SEQUENCE) and _integer(times) and len(seq) * times > MAX_SIZE:
                raise SecurityError(f"repeating {len(seq)} items {times} times is too large")
        if operator == "+" and isinstance(left, _SEQUENCE) and isinstance(right, _SEQUENCE) \
                and len(left) + len(right) > MAX_SIZE:
            raise SecurityError(f"the result would be longer than {MAX_SIZE}")
        return super().call_binop(context, operator, left, right)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# range() items one rendering may ask for, over all its calls: the sandbox bounds each call, but
# loops nested in loops would still run for hours.
MAX_RANGE_ITEMS = 200_000
_ranged: ContextVar[int] = ContextVar("ranged", default=0)


def _range(*args: int) -> range:
    numbers = safe_range(*args)
    total = _ranged.get() + len(numbers)
    if total > MAX_RANGE_ITEMS:
        raise SecurityError(f"the template's loops ask for more than {MAX_RANGE_ITEMS} items")
    _ranged.set(total)
    return numbers


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.globals["range"] = _range


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return patterns.sub(pattern, replacement, str(value))


def _regex_search(value: Any, pattern: str) -> str | None:
    return patterns.search(pattern, str(value))


_ENV.filters.update(
    regex_replace=_regex_replace, regex_search=_regex_search,
    to_json=lambda v: json.dumps(v, sort_keys=True, default=str), from_json=json.loads,
    basename=lambda v: str(v).rstrip("/").rsplit("/", 1)[-1],
    # inventory | services(ENV[, NAMES]): the services ENV runs (engine/language/services.py)
    services=lambda inventory, env, only=(): services.of(inventory, str(env), only or ()),
    service_names=services.names, per_service=services.per_service, retag=services.retag,
    tagged=services.tagged, differing=services.differing, only=services.only,
    tag_of=services.tag_of, for_each=services.for_each)


class Deferred(Exception):
    """A template needs a result that only exists once an earlier step has run."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Pending:
    """Stands for a registered result that does not exist yet."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _defer(self, *_: Any, **__: Any) -> Any:
        raise Deferred(object.__getattribute__(self, "_name"))

    __getattr__ = __getitem__ = __str__ = __iter__ = __len__ = __bool__ = _defer
    __eq__ = __lt__ = __gt__ = __contains__ = __int__ = __float__ = _defer
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<pending {object.__getattribute__(self, '_name')}>"


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> Any:
    return _ENV.from_string(source)


@lru_cache(maxsize=4096)
def _compile_expression(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


def render_value(value: Any, context: Mapping[str, Any], where: str = "") -> Any:
    """Render every string inside ``value`` (dicts and lists included)."""
    if isinstance(value, str):
        return render_string(value, context, where)
    if isinstance(value, Mapping):
        return {k: render_value(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def render_string(source: str, context: Mapping[str, Any], where: str = "") -> Any:
    if "{{" not in source and "{%" not in source:
        return source
    budget = _ranged.set(0)
    try:
        match = _SINGLE_EXPR.match(source)
        if match:
            result = _compile_expression(match.group("expr").strip())(**context)
            _touch(result)
            return result
        return _compile_template(source).render(**context)
    except Deferred:
        raise
    except InvalidInput as exc:  # raised by a template function such as secret_env
        # Its message says what is missing; the template is not quoted, since the values
        # around the call (a URL with credentials) are no business of an error message.
        raise InvalidInput(exc.message, path=where or None) from exc
    except TemplateError as exc:
        raise InvalidInput(f"template {source!r}: {exc.message or exc}",
                           path=where or None) from exc
    except _EVALUATION_ERRORS as exc:
        raise InvalidInput(f"template {source!r}: {type(exc).__name__}: {exc}",
                           path=where or None) from exc
    finally:
        _ranged.reset(budget)


def render_text(source: str, context: Mapping[str, Any], where: str = "") -> str:
    return str(render_value(source, context, where))


def condition(value: Any, context: Mapping[str, Any], where: str = "") -> bool:
    """A ``when``/``that`` condition: a bool, a ``{{ expr }}`` or a bare expression."""
    if isinstance(value, bool):
        return value
    text = str(value)
    if "{{" not in text:
        text = "{{ " + text + " }}"
    return bool(render_string(text, context, where))


def _touch(result: Any) -> None:
    # StrictUndefined only raises when used: make an undefined result fail here, not later.
    if isinstance(result, StrictUndefined):
        str(result)
    if isinstance(result, Pending):
        result._defer()


def parse(source: str) -> Any:
    """A template's syntax tree, with the engine's filters and tests known (not rendered)."""
    return _ENV.parse(source)


def syntax_check(source: str) -> None:
    """Parse a template (or a bare condition) without rendering it."""
    if "{{" not in source and "{%" not in source:
        return
    match = _SINGLE_EXPR.match(source)
    if match:
        # Compiled as rendering compiles it, once for both. An expression that compiles
        # compiles as the template ``{{ expression }}`` too (the same parse, the same code
        # for it): only one that does not needs the template's own verdict and message.
        try:
            _compile_expression(match.group("expr").strip())
        except Exception:
            _compile_template(source)
        return
    _compile_template(source)  # compiling also finds unknown filters and tests


def check_templates(runbook: Runbook) -> None:
    """Every template of the runbook's steps parses: InvalidInput naming the step's line."""
    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, Mapping):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list | tuple):
            return [s for v in value for s in strings(v)]
        return []

    for step in runbook.all_steps():
        for text in strings([step.name, step.when, dict(step.spec), dict(step.args or {})]):
            try:
                syntax_check(text)
            except TemplateError as exc:
                raise InvalidInput(f"template error in {text!r}: {exc.message}",
                                   file=step.file, line=step.line,
                                   path=f"$.steps[{step.id}]") from exc
