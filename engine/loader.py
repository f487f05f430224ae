"""Find runbooks and inventories, and read YAML safely while keeping line numbers.

Line numbers let every later error point at the place in the file a person must fix.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import InvalidInput

# A document whose aliases expand past this many nodes is refused (billion laughs).
MAX_EXPANDED_NODES = 100_000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data, where each value sits, and a digest of its bytes."""

    path: Path
    data: Any
    lines: dict[JsonPath, int]
    sha256: str

    def line_of(self, path: JsonPath) -> int | None:
        """The line of the value at ``path``, or of its nearest parent that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def search_dirs(kind: str) -> list[Path]:
    """Folders searched for runbooks or inventories: ./<kind>, then the ones shipped here."""
    env = os.environ.get(f"RUNBOOK_{kind.upper()}_PATH")
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    dirs += [Path.cwd() / kind, PROJECT_ROOT / kind]
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def resolve(name_or_path: str, kind: str) -> Path:
    """A runbook (or inventory) by name from the search folders, or by explicit path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise InvalidInput(f"{kind[:-1]} file not found: {name_or_path}")
        return path
    if not NAME_RE.match(name_or_path):
        raise InvalidInput(
            f"invalid {kind[:-1]} name {name_or_path!r}: use letters, digits, '-' and '_' "
            "or give a path to a .yaml file")
    for folder in search_dirs(kind):
        for ext in (".yaml", ".yml"):
            candidate = folder / f"{name_or_path}{ext}"
            if candidate.is_file():
                return candidate
    where = ", ".join(str(d) for d in search_dirs(kind))
    raise InvalidInput(f"no {kind[:-1]} named {name_or_path!r} (looked in {where})")


def list_names(kind: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in search_dirs(kind):
        if folder.is_dir():
            for p in sorted(folder.glob("*.y*ml")):
                found.setdefault(p.stem, p)
    return dict(sorted(found.items()))


def load(path: Path) -> Document:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read: {exc.strerror}", file=str(path)) from exc
    return parse(raw, path)


def parse(raw: bytes, path: Path) -> Document:
    text = raw.decode("utf-8", errors="replace")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InvalidInput("the file is empty", file=str(path), line=1)
        _check_expansion(node, path)
        lines: dict[JsonPath, int] = {}
        _index(node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        ctx = exc.context_mark
        if exc.context and ctx and mark and ctx.line != mark.line:
            problem += f" ({exc.context} started on line {ctx.line + 1})"
        raise InvalidInput(f"malformed YAML: {problem}", file=str(path), line=line) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"malformed YAML: {exc}", file=str(path)) from exc
    finally:
        loader.dispose()
    return Document(path=path, data=data, lines=lines, sha256=hashlib.sha256(raw).hexdigest())


def _check_expansion(root: yaml.Node, path: Path) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a recursive alias counts once instead of looping
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v) for v in node.value)
        if total > MAX_EXPANDED_NODES:
            raise InvalidInput(
                f"YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes; refusing to load",
                file=str(path), line=node.start_mark.line + 1)
        sizes[key] = total
        return total

    size(root)


def _index(node: yaml.Node, at: JsonPath, lines: dict[JsonPath, int], path: Path) -> None:
    if at in lines:
        return  # reached again through an alias
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            if key in seen:
                raise InvalidInput(f"duplicate key {key!r}", file=str(path),
                                   line=key_node.start_mark.line + 1)
            seen.add(key)
            _index(value_node, (*at, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*at, i), lines, path)
