"""Frozen records the engine passes around once the schema has accepted a document.

Raw dicts stop at the schema: from here on, code reads these types.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.loader import Document
from engine.schema import STEP_TYPE_KEYS

SCHEMA_VERSION = 1
PARAM_TYPES: dict[str, type] = {"string": str, "integer": int, "boolean": bool}


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    enum: tuple[Any, ...] = ()
    pattern: str | None = None
    description: str = ""
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    spec: Mapping[str, Any]
    name: str
    when: Any = None
    register: str | None = None
    retries: int = 0
    delay: float = 5.0
    on_failure: tuple[Step, ...] = ()
    line: int | None = None
    at: tuple[str | int, ...] = ()  # where the step sits in its file


@dataclass(frozen=True)
class Check:
    that: Any
    message: str
    line: int | None = None


@dataclass(frozen=True)
class Runbook:
    name: str
    description: str
    path: Path
    sha256: str
    params: tuple[Param, ...]
    vars: Mapping[str, Any]
    steps: tuple[Step, ...]
    inventory: str | None = None
    checks: tuple[Check, ...] = ()
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, compare=False,
                                                       repr=False)

    def line_of(self, step: Step, where: str | None) -> int | None:
        """The line of a field of ``step`` from a path like ``$.steps[id].command.argv[1]``."""
        rel: tuple[str | int, ...] = ()
        prefix = f"$.steps[{step.id}]"
        if where and where.startswith(prefix):
            rel = tuple(int(p) if p.isdigit() else p
                        for p in re.findall(r"[^.\[\]]+", where[len(prefix):]))
        for end in range(len(rel), -1, -1):
            line = self.lines.get((*step.at, *rel[:end]))
            if line is not None:
                return line
        return step.line

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def all_steps(self) -> Iterator[Step]:
        def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
            for step in steps:
                yield step
                yield from walk(step.on_failure)
        return walk(self.steps)


@dataclass(frozen=True)
class Inventory:
    name: str
    path: Path | None
    sha256: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a step did. Not a checkpoint: see store.StepRecord."""

    status: str  # ok | skipped | failed | checked | would-run
    result: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


def build_runbook(doc: Document) -> Runbook:
    data = doc.data
    meta = data["metadata"]
    raw_params = (data.get("params") or {}).items()
    params = tuple(_build_param(name, spec, doc) for name, spec in raw_params)
    seen: dict[str, int | None] = {}
    steps = tuple(_build_step(s, ("steps", i), doc, seen) for i, s in enumerate(data["steps"]))
    return Runbook(
        name=meta["name"], description=meta.get("description", ""), path=doc.path,
        sha256=doc.sha256, params=params, vars=data.get("vars") or {}, steps=steps,
        inventory=meta.get("inventory"), lines=doc.lines,
        checks=tuple(Check(c["that"], c["message"], doc.line_of(("checks", i)))
                     for i, c in enumerate(data.get("checks", ()))))


def _build_param(name: str, spec: Mapping[str, Any], doc: Document) -> Param:
    def invalid(message: str) -> InvalidInput:
        return InvalidInput(message, file=str(doc.path), line=doc.line_of(("params", name)),
                            path=f"$.params.{name}")

    ptype = spec.get("type", "string")
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise invalid(f"invalid pattern {pattern!r}: {exc}") from exc
    param = Param(name=name, type=ptype, required=spec.get("required", False),
                  default=spec.get("default"), enum=tuple(spec.get("enum", ())),
                  pattern=pattern, description=spec.get("description", ""),
                  secret=spec.get("secret", False))
    for value in ([param.default] if param.default is not None else []) + list(param.enum):
        if type(value) is not PARAM_TYPES[ptype]:
            raise invalid(f"{value!r} is not of the param's type {ptype}")
    return param


def _build_step(raw: Mapping[str, Any], at: tuple[str | int, ...], doc: Document,
                seen: dict[str, int | None]) -> Step:
    line = doc.line_of(at)
    step_id = raw["id"]
    if step_id in seen:
        raise InvalidInput(f"duplicate step id {step_id!r} (first defined on line {seen[step_id]})",
                           file=str(doc.path), line=doc.line_of((*at, "id")),
                           path=_path(at) + ".id")
    seen[step_id] = line
    step_type = next(k for k in STEP_TYPE_KEYS if k in raw)
    on_failure = tuple(_build_step(s, (*at, "on_failure", i), doc, seen)
                       for i, s in enumerate(raw.get("on_failure", ())))
    return Step(id=step_id, type=step_type, spec=raw[step_type], name=raw.get("name", step_id),
                when=raw.get("when"), register=raw.get("register"), retries=raw.get("retries", 0),
                delay=raw.get("delay", 5.0), on_failure=on_failure, line=line, at=at)


def _path(at: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at)
