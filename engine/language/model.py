"""Frozen records the engine passes around once the schema has accepted a document.

Raw dicts stop at the schema: from here on, code reads these types.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.language import patterns
from engine.language.loader import Document
from engine.status import StepStatus

SCHEMA_VERSION = 1
# The keys every step may have; the one other key names its type (the schema allows one).
COMMON_STEP_KEYS = frozenset({"id", "name", "when", "register", "retries", "delay", "on_failure",
                              "fresh", "failure_is_final"})
PARAM_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool,
    "list": str}  # a list param's enum holds its items' values


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
    minimum: float | None = None  # integer and number params only
    maximum: float | None = None
    line: int | None = field(default=None, compare=False)  # where the runbook declares it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every option string the param takes: a boolean is a switch, ``--x``/``--no-x``."""
        return (self.flag, "--no-" + self.flag[2:]) if self.type == "boolean" else (self.flag,)


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
    file: str = ""
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, compare=False,
                                                       repr=False)
    # The include that brought this step in from a fragment, as templates name it: its
    # registered result is ``GROUP.REGISTER`` and its status ``steps.GROUP.ID``.
    group: str | None = None
    args: Mapping[str, Any] | None = None  # that include's `with:`, seen as `args`
    local_id: str | None = None  # its id in the fragment
    include_file: str = ""  # where that include is written
    include_line: int | None = None
    fresh: bool = False  # run again on every resume, never taken as done
    failure_is_final: bool = False  # failed and undone, the run cannot succeed
    # An include's own condition (its steps' ``when`` holds it too): decided before the
    # fragment's args are rendered, which may need what a false condition says is missing.
    include_when: Any = None

    @property
    def outputs(self) -> tuple[str, ...]:
        """The named outputs it declares (an ansible step's ``outputs:``)."""
        return tuple(str(o) for o in (self.spec.get("outputs") or ())) \
            if isinstance(self.spec, Mapping) else ()

    def line_of(self, where: str | None) -> int | None:
        """The line of a field of this step from a path like ``$.steps[id].command.argv[1]``."""
        rel: tuple[str | int, ...] = ()
        prefix = f"$.steps[{self.id}]"
        if where and where.startswith(prefix):
            rel = tuple(int(p) if p.isdigit() else p
                        for p in re.findall(r"[^.\[\]]+", where[len(prefix):]))
        for end in range(len(rel), -1, -1):
            line = self.lines.get((*self.at, *rel[:end]))
            if line is not None:
                return line
        return self.line


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
    lock: str | None = None  # template: the environment a run holds the lock of
    gated: bool = False
    bind: Mapping[str, str] = field(default_factory=dict)  # name → template, see plan.bind
    check_drift: bool = False  # its locked environments must have no drift (engine/views/drift.py)
    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def all_steps(self) -> Iterator[Step]:
        """Every step once, on_failure steps after the first step that uses them."""
        seen: set[str] = set()

        def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
            for step in steps:
                if step.id not in seen:
                    seen.add(step.id)
                    yield step
                    yield from walk(step.on_failure)
        return walk(self.steps)


@dataclass(frozen=True)
class Inventory:
    name: str
    path: Path | None
    sha256: str
    data: Mapping[str, Any] = field(default_factory=dict)
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, compare=False,
                                                       repr=False)
    # Each person's public SSH keys (engine.trust.keys), from ``keys`` and ``keys_file``.
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    # What the schema has checked, by name: past the loader, nothing reads the raw mapping
    # for these (an inventory without one is an empty one).
    @property
    def environments(self) -> Mapping[str, Mapping[str, Any]]:
        """Each environment's settings (namespace, deployment, overlay, ...), in order."""
        return self.data.get("environments") or {}

    @property
    def promotions(self) -> Mapping[str, Sequence[str]]:
        """The environments each environment may be promoted to."""
        return self.data.get("promotions") or {}

    @property
    def people(self) -> Mapping[str, Mapping[str, Any]]:
        """Each known person: roles, keys."""
        return self.data.get("people") or {}

    @property
    def notify(self) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        """Each audience and the variables holding its URLs."""
        return self.data.get("notify") or {}

    @property
    def checklists(self) -> Mapping[str, Any]:
        """The checklists of the transitions between environments."""
        return self.data.get("checklists") or {}

    @property
    def variables(self) -> Mapping[str, Any]:
        """The inventory's ``vars``: what its runbooks' templates read as ``inventory.vars``."""
        return self.data.get("vars") or {}

    @property
    def kubeconfig(self) -> str:
        """The kubeconfig of its clusters ('' for the default)."""
        return str(self.variables.get("kubeconfig") or "")

    @property
    def artifacts_retention(self) -> str | None:
        """``retention.artifacts``: how long the artifacts of ended runs are kept."""
        value = (self.data.get("retention") or {}).get("artifacts")
        return None if value is None else str(value)

    def line_of(self, at: tuple[str | int, ...]) -> int | None:
        """The line of the value at ``at`` in the inventory's file, or of its nearest parent."""
        for end in range(len(at), -1, -1):
            line = self.lines.get(at[:end])
            if line is not None:
                return line
        return None


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a step did. Not a checkpoint: see store.StepRecord."""

    status: StepStatus  # ok | skipped | failed | checked | would-run
    result: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


FragmentLoader = Callable[[Path], Document]


def build_runbook(doc: Document, load_fragment: FragmentLoader) -> Runbook:
    """Frozen records from a validated runbook; ``include`` steps are expanded here."""
    data = doc.data
    meta = data["metadata"]
    raw_params = (data.get("params") or {}).items()
    params = tuple(_build_param(name, spec, doc) for name, spec in raw_params)
    builder = _StepBuilder(load_fragment)
    steps = builder.steps(data["steps"], ("steps",), doc)
    digest = hashlib.sha256(doc.sha256.encode())
    for sha in sorted(builder.fragment_shas):
        digest.update(sha.encode())
    return Runbook(
        name=meta["name"], description=meta.get("description", ""), path=doc.path,
        sha256=digest.hexdigest() if builder.fragment_shas else doc.sha256, params=params,
        vars=data.get("vars") or {}, steps=steps, inventory=meta.get("inventory"),
        lock=meta.get("lock"), gated=meta.get("gated", False), bind=meta.get("bind") or {},
        check_drift=meta.get("check_drift", False),
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
            patterns.compiled(pattern)
        except InvalidInput as exc:
            raise invalid(exc.message) from exc
    param = Param(name=name, type=ptype, required=spec.get("required", False),
                  default=spec.get("default"), enum=tuple(spec.get("enum", ())),
                  pattern=pattern, description=spec.get("description", ""),
                  secret=spec.get("secret", False), minimum=spec.get("minimum"),
                  maximum=spec.get("maximum"), line=doc.line_of(("params", name)))
    if ptype == "boolean" and param.required:
        # A switch is on or off; absent means its default (or off), so "required" has no
        # meaning that a user could satisfy other than by typing a value the default gives.
        raise invalid("a boolean param is a switch (--x / --no-x) and cannot be required: "
                      "give it a default instead")
    if ptype == "list" and param.default is not None:
        raise invalid("a list param has no default: not given, it is not defined")
    numeric = ptype in ("integer", "number")
    for bound in (param.minimum, param.maximum):
        if bound is not None and not numeric:
            raise invalid(f"minimum and maximum apply to integer and number params, "
                          f"not to a {ptype}")
        if isinstance(bound, float) and not math.isfinite(bound):
            raise invalid(f"the bound {bound!r} is not a finite number")
    if param.minimum is not None and param.maximum is not None and \
            param.minimum > param.maximum:
        raise invalid(f"minimum {param.minimum} is above maximum {param.maximum}")
    for value in ([param.default] if param.default is not None else []) + list(param.enum):
        if isinstance(value, bool) != (ptype == "boolean") or \
                not isinstance(value, PARAM_TYPES[ptype]):
            raise invalid(f"{value!r} is not of the param's type {ptype}")
        if isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"{value!r} is not a finite number")
        low, high = param.minimum, param.maximum
        if isinstance(value, int | float) and (
                (low is not None and value < low) or (high is not None and value > high)):
            raise invalid(f"{value!r} is outside the param's minimum and maximum")
    return param


def _both(outer: Any, inner: Any) -> Any:
    """Two step conditions as one (None: none; a condition is a template or a boolean)."""
    if outer is None or outer is True:
        return inner
    if inner is None or inner is True or outer is False:
        return outer
    if inner is False:
        return False
    return f"({outer}) and ({inner})"


@dataclass(frozen=True)
class _Include:
    id: str
    args: Mapping[str, Any]
    file: str = ""
    line: int | None = None


class _StepBuilder:
    def __init__(self, load_fragment: FragmentLoader) -> None:
        self.load_fragment = load_fragment
        self.seen: dict[str, str] = {}
        self.built: dict[str, tuple[Mapping[str, Any], Step]] = {}
        self.fragment_shas: set[str] = set()

    def steps(self, raws: list[Any], at: tuple[str | int, ...], doc: Document,
              include: _Include | None = None, *, handlers: bool = False) -> tuple[Step, ...]:
        out: list[Step] = []
        for i, raw in enumerate(raws):
            shared = self._shared(raw, raw.get("id", "")) if handlers and include is None \
                else None
            if shared is not None:
                out.append(shared)
            elif "include" in raw:
                out.extend(self._include(raw, (*at, i), doc, include))
            else:
                out.append(self._step(raw, (*at, i), doc, include))
        return tuple(out)

    def _shared(self, raw: Mapping[str, Any], step_id: str) -> Step | None:
        """An on_failure step written once and used again through a YAML anchor."""
        known = self.built.get(step_id)
        return known[1] if known and known[0] == raw else None

    def _claim(self, step_id: str, doc: Document, at: tuple[str | int, ...]) -> None:
        where = f"{doc.path.name}:{doc.line_of(at)}"
        if step_id in self.seen:
            raise InvalidInput(f"duplicate step id {step_id!r} (first defined at "
                               f"{self.seen[step_id]})", file=str(doc.path),
                               line=doc.line_of((*at, "id")), path=_path(at) + ".id")
        self.seen[step_id] = where

    def _step(self, raw: Mapping[str, Any], at: tuple[str | int, ...], doc: Document,
              include: _Include | None) -> Step:
        step_id = raw["id"] if include is None else f"{include.id}-{raw['id']}"
        self._claim(step_id, doc, at)
        step_type = next(k for k in raw if k not in COMMON_STEP_KEYS)
        register = raw.get("register")
        on_failure = self.steps(list(raw.get("on_failure", ())), (*at, "on_failure"), doc,
                                include, handlers=True)
        step = Step(
            id=step_id, type=step_type, spec=raw[step_type], name=raw.get("name", step_id),
            when=raw.get("when"),
            register=register,
            retries=raw.get("retries", 0), delay=raw.get("delay", 5.0), on_failure=on_failure,
            line=doc.line_of(at), at=at, file=str(doc.path), lines=doc.lines,
            group=include.id.replace("-", "_") if include else None,
            args=include.args if include else None,
            local_id=raw["id"] if include else None,
            include_file=include.file if include else "",
            include_line=include.line if include else None, fresh=raw.get("fresh", False),
            failure_is_final=raw.get("failure_is_final", False))
        self.built[step_id] = (raw, step)
        return step

    def _include(self, raw: Mapping[str, Any], at: tuple[str | int, ...], doc: Document,
                 outer: _Include | None) -> tuple[Step, ...]:
        def invalid(message: str) -> InvalidInput:
            return InvalidInput(message, file=str(doc.path), line=doc.line_of(at),
                                path=_path(at) + ".include")

        if outer is not None:
            raise invalid("a fragment cannot include another fragment")
        self._claim(raw["id"], doc, at)
        target = (doc.path.parent / raw["include"]).resolve()
        if not target.is_file():
            raise invalid(f"fragment not found: {raw['include']}")
        try:
            fragment = self.load_fragment(target)
        except InvalidInput as exc:
            raise InvalidInput(f"{exc.message} (included from {doc.path}:{doc.line_of(at)})",
                               file=exc.file, line=exc.line, path=exc.path) from exc
        self.fragment_shas.add(fragment.sha256)
        declared = fragment.data.get("args") or {}
        given = dict(raw.get("with") or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise invalid(f"{raw['include']} takes no arg {unknown[0]!r} "
                          f"(args: {', '.join(declared) or 'none'})")
        missing = [a for a, spec in declared.items() if spec.get("required") and a not in given]
        if missing:
            raise invalid(f"{raw['include']} needs the arg {missing[0]!r}")
        steps = self.steps(fragment.data["steps"], ("steps",), fragment,
                           _Include(raw["id"], given, str(doc.path), doc.line_of((*at, "with"))))
        # The include's on_failure steps run when any of the fragment's steps fails.
        handlers = self.steps(list(raw.get("on_failure", ())), (*at, "on_failure"), doc,
                              handlers=True)
        # The include's condition holds for each of its steps, beside the step's own.
        return tuple(replace(s, on_failure=s.on_failure + handlers,
                             when=_both(raw.get("when"), s.when),
                             include_when=raw.get("when")) for s in steps)


def _path(at: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at)
