"""Check what a runbook's templates name of its steps before anything runs.

A template that reaches for an output a step does not declare, a result registered by a step
that runs later (or by none), or a fragment's step its include does not have would otherwise
fail only when a run gets there, perhaps after production has changed. Templates are parsed
with Jinja2 (never rendered): each chain of attributes and constant subscripts that starts at
a step's name is followed as far as the runbook can know it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, meta, nodes

from engine.errors import InvalidInput
from engine.language.model import Runbook, Step
from engine.language.render import parse
from engine.steps import STEP_TYPES

# Names templates see besides the steps' results: a register or an include may not hide one.
RESERVED = frozenset({"params", "inventory", "run", "vars", "facts", "steps", "secret_env",
                      "args", "local", "poll"})


@dataclass(frozen=True)
class _Where:
    step: Step | None  # None: the runbook's metadata
    path: str  # e.g. $.steps[read].ansible.extravars.tag
    line: int | None
    file: str


def check(runbook: Runbook) -> None:
    """Raise InvalidInput naming the file and line of the first bad reference."""
    steps = list(runbook.all_steps())
    order = {s.id: i for i, s in enumerate(steps)}
    registers = {s.register: s for s in steps if s.register and s.group is None}
    groups: dict[str, dict[str, Step]] = {}
    group_ids: dict[str, dict[str, Step]] = {}
    for s in steps:
        if s.group is not None:
            group_ids.setdefault(s.group, {})[str(s.local_id)] = s
            if s.register:
                groups.setdefault(s.group, {})[s.register] = s
    for name, step in registers.items():
        if name in group_ids or name in RESERVED:
            what = "an include" if name in group_ids else "what templates already see"
            at = f"$.steps[{step.id}].register"
            raise InvalidInput(f"register {name!r} is also the name of {what}",
                               file=step.file, line=step.line_of(at), path=at)
    for group, inner in group_ids.items():
        if group in RESERVED:
            first = next(iter(inner.values()))
            raise InvalidInput(f"include {group!r}: the name of what templates already see",
                               file=first.include_file, line=first.include_line)
    top = {s.id for s in steps if s.group is None}
    names = _Names(registers, groups, group_ids, order, top)
    for step in steps:
        for where, text, is_condition in _templates(step):
            names.check(text, is_condition, where, step)
    main = next((s for s in steps if s.file == str(runbook.path)), None)
    for key, text in runbook.bind.items():
        line = main.lines.get(("metadata", "bind", key)) if main else None
        names.check(text, False, _Where(None, f"$.metadata.bind.{key}", line,
                                        str(runbook.path)), None)


class _Names:
    def __init__(self, registers: Mapping[str, Step], groups: Mapping[str, Mapping[str, Step]],
                 group_ids: Mapping[str, Mapping[str, Step]], order: Mapping[str, int],
                 top: set[str]) -> None:
        self.top = top
        self.registers = registers
        self.groups = groups
        self.group_ids = group_ids
        self.order = order

    def check(self, text: str, is_condition: bool, where: _Where, step: Step | None) -> None:
        bare = "{{" not in text and "{%" not in text
        if bare:
            if not is_condition:
                return
            text = "{{ " + text + " }}"
        try:
            chains = _chains_of(text)
            # Which names a template binds itself (a loop's variable, a set) takes a pass of
            # Jinja2's compiler, which only a chain that is a problem needs. A bare condition
            # has that pass here regardless: the syntax check, which compiles every other
            # template first, skips it.
            free = _free(text) if bare else None
        except TemplateError:
            return  # the syntax check reports it, with its own message
        for root, keys in chains:
            problem = self._problem(root, keys, step)
            if not problem:
                continue
            if free is None:
                try:
                    free = _free(text)
                except TemplateError:
                    return
            if root in free:
                raise InvalidInput(problem, file=where.file, line=where.line, path=where.path)

    def _problem(self, root: str, keys: Sequence[str], step: Step | None) -> str | None:
        if root == "steps" and keys:
            return self._steps_problem(keys)
        if root == "local" and step is not None and step.group is not None:
            root = step.group  # a fragment's own steps, by their names in the fragment
        if root in self.registers:
            return self._later(self.registers[root], root, step) or \
                self._outputs_problem(self.registers[root], root, keys)
        if root in self.groups or root in self.group_ids:
            if not keys:
                return None
            inner = self.groups.get(root, {})
            if keys[0] not in inner:
                return (f"{root}.{keys[0]}: include {root} has no step registering "
                        f"{keys[0]!r} (its registers: {', '.join(inner) or 'none'})")
            found, name = inner[keys[0]], f"{root}.{keys[0]}"
            return self._later(found, name, step) or \
                self._outputs_problem(found, name, keys[1:])
        return None

    def _later(self, found: Step, name: str, step: Step | None) -> str | None:
        if step is None or self.order[found.id] < self.order[step.id]:
            return None
        when = "this step" if found.id == step.id else f"step {found.id}, which comes later"
        return f"{name} is registered by {when}: a step sees only what earlier steps register"

    @staticmethod
    def _outputs_problem(found: Step, name: str, keys: Sequence[str]) -> str | None:
        if not keys or keys[0] != "outputs":
            return None
        if not STEP_TYPES[found.type].outputs:
            return f"{name}.outputs: step {found.id} is a {found.type} step, which has no outputs"
        declared = found.outputs
        if len(keys) > 1 and keys[1] not in declared:
            return (f"{name}.outputs.{keys[1]}: step {found.id} declares no output {keys[1]!r} "
                    f"(outputs: {', '.join(declared) or 'none'})")
        return None

    def _steps_problem(self, keys: Sequence[str]) -> str | None:
        first = keys[0]
        if first in self.group_ids:
            inner = self.group_ids[first]
            if len(keys) > 1 and keys[1] not in inner:
                return (f"steps.{first}.{keys[1]}: include {first} has no step {keys[1]!r} "
                        f"(its steps: {', '.join(inner)})")
            return None
        if first not in self.top:
            return f"steps.{first}: there is no step {first!r}"
        return None


@lru_cache(maxsize=4096)
def _chains_of(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The chains of a template's text (a fragment's templates recur in each include)."""
    return tuple((root, tuple(keys)) for root, keys in _chains(parse(text)))


def _free(text: str) -> set[str]:
    return meta.find_undeclared_variables(parse(text))


def _chains(tree: nodes.Node) -> Iterator[tuple[str, list[str]]]:
    """Every ``name.key[...]`` chain in a template: its root name and constant keys."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        keys: list[str] = []
        current: nodes.Node = node
        while True:
            if isinstance(current, nodes.Getattr):
                keys.insert(0, current.attr)
                current = current.node
            elif isinstance(current, nodes.Getitem):
                arg = current.arg
                if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
                    keys = []  # a computed key: only what comes before it is known
                else:
                    keys.insert(0, arg.value)
                current = current.node
            else:
                break
        if isinstance(current, nodes.Name) and current.ctx == "load":
            yield current.name, keys


def _templates(step: Step) -> Iterator[tuple[_Where, str, bool]]:
    """Each string of a step that is a template, where it sits, and whether it is a bare
    condition."""
    base = f"$.steps[{step.id}]"

    def where(path: str) -> _Where:
        return _Where(step, path, step.line_of(path), step.file)

    if isinstance(step.name, str):
        yield where(base + ".name"), step.name, False
    if step.when is not None and not isinstance(step.when, bool):
        yield where(base + ".when"), str(step.when), True
    conditions = STEP_TYPES[step.type].condition_fields
    spec = step.spec if isinstance(step.spec, Mapping) else {}
    for key, value in spec.items():
        for path, text in _strings(value, f"{base}.{step.type}.{key}"):
            yield where(path), text, key in conditions
    include = step.id[:-len(str(step.local_id)) - 1] if step.local_id else step.id
    for path, text in _strings(dict(step.args or {}), f"$.steps[{include}].with"):
        # The include's args are written where the include is, in the runbook.
        yield _Where(step, path, step.include_line, step.include_file), text, False


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")
