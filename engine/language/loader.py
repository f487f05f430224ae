"""Find runbooks and inventories, and read YAML safely while keeping line numbers.

Line numbers let every later error point at the place in the file a person must fix.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import InvalidInput

# Limits far above any runbook or inventory (the shipped ones have a few hundred nodes, at most
# ten levels deep), so that a hostile or broken file is refused at once instead of holding the
# engine for minutes, exhausting the stack or the memory.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_NODES = 10_000  # as written
MAX_EXPANDED_NODES = 20_000  # once aliases are expanded (billion laughs)
KINDS = ("Runbook", "Fragment", "Inventory")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def source_tree() -> Path | None:
    """The checkout this engine runs from, with its runbooks, inventories and overlays; None
    for an installed engine (its parent folder is site-packages, which holds none of ours)."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else None

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
    """Folders searched for runbooks or inventories: ``$RUNBOOK_<KIND>_PATH``, ./<kind>, then
    the checkout's own when the engine runs from one."""
    env = os.environ.get(f"RUNBOOK_{kind.upper()}_PATH")
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    dirs.append(Path.cwd() / kind)
    checkout = source_tree()
    if checkout is not None:
        dirs.append(checkout / kind)
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


def load(path: Path, kind: str) -> Document:
    """Read and parse a runbook, fragment or inventory (``kind``) file."""
    if not path.is_file():
        raise InvalidInput("not a regular file", file=str(path))
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read: {exc.strerror}", file=str(path)) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(f"larger than {MAX_FILE_BYTES // 1_000_000} MB, far more than any "
                           f"{kind.lower()}; refusing to load", file=str(path))
    return parse(raw, path, kind)


def parse(raw: bytes, path: Path, kind: str) -> Document:
    """Parse YAML bytes into a Document, refusing anything that is not a ``kind`` document.

    Nothing of a file that is not a runbook, fragment or inventory is quoted in an error: a
    path given by mistake (or on purpose) may hold secrets.
    """
    src = str(path)
    nul = raw.find(b"\0")
    if nul >= 0:
        raise InvalidInput("a NUL byte: not a text file", file=src,
                           line=raw.count(b"\n", 0, nul) + 1)
    text = raw.decode("utf-8", errors="replace")
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InvalidInput("the file is empty", file=src, line=1)
        _check_expansion(node, path)
        _check_kind(node, path, kind)
        lines: dict[JsonPath, int] = {}
        _index(node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise InvalidInput(f"malformed YAML: the character #x{exc.character:04x} is not allowed",
                           file=src, line=text.count("\n", 0, exc.position or 0) + 1) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        if isinstance(exc, yaml.composer.ComposerError):
            # It quotes an anchor's name, and the file may not be a runbook at all.
            problem = re.sub(r" '[^']*'", "", problem)
        ctx = exc.context_mark
        if exc.context and ctx and mark and ctx.line != mark.line:
            problem += f" ({exc.context} started on line {ctx.line + 1})"
        raise InvalidInput(f"malformed YAML: {' '.join(problem.split())}", file=src,
                           line=line) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"malformed YAML: {' '.join(str(exc).split())}", file=src) from exc
    finally:
        loader.dispose()
    doc = Document(path=path, data=data, lines=lines, sha256=hashlib.sha256(raw).hexdigest())
    at = _non_finite(data, ())
    if at is not None:  # a timeout of .inf or a window of .nan hours breaks whatever uses it
        raise InvalidInput(".inf and .nan are not numbers a runbook or inventory can use",
                           file=src, line=doc.line_of(at))
    return doc


def _non_finite(value: Any, at: JsonPath) -> JsonPath | None:
    """Where the first infinite or not-a-number float sits (the depth is already bounded)."""
    if isinstance(value, float) and not math.isfinite(value):
        return at
    items: Any = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, (*at, key))
        if found is not None:
            return found
    return None


class _Loader(yaml.composer.Composer, yaml.CSafeLoader):
    """libyaml's parser (fast, and not recursive) under PyYAML's composer, which is told to
    stop at the first node past the depth or count limits, or at a recursive alias."""

    def __init__(self, text: str, path: Path) -> None:
        yaml.CSafeLoader.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        self._src = str(path)
        self._depth = 0
        self._nodes = 0
        self._open: set[str] = set()  # anchors of the nodes being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        mark = event.start_mark if event is not None else None
        line = mark.line + 1 if mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise InvalidInput("a recursive alias: it refers to a node that contains it",
                                   file=self._src, line=line)
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise InvalidInput(f"more than {MAX_NODES} YAML nodes, far more than any runbook "
                               "or inventory; refusing to load", file=self._src, line=line)
        if self._depth >= MAX_DEPTH:
            raise InvalidInput(f"nested more than {MAX_DEPTH} levels deep; refusing to load",
                               file=self._src, line=line)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases expand past the node count or the depth limit."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height) once expanded

    def refuse(node: yaml.Node, what: str) -> InvalidInput:
        return InvalidInput(f"YAML aliases expand to {what}; refusing to load",
                            file=str(path), line=node.start_mark.line + 1)

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        if known is not None:
            if depth + known[1] > MAX_DEPTH:
                raise refuse(node, f"more than {MAX_DEPTH} levels")
            return known
        if depth > MAX_DEPTH:
            raise refuse(node, f"more than {MAX_DEPTH} levels")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total, height = 1, 0
        for child in children:
            size, below = measure(child, depth + 1)
            total += size
            height = max(height, below + 1)
            if total > MAX_EXPANDED_NODES:
                raise refuse(node, f"more than {MAX_EXPANDED_NODES} nodes")
        measured[id(node)] = (total, height)
        return total, height

    measure(root, 1)


def _check_kind(root: yaml.Node, path: Path, kind: str) -> None:
    """Before anything quotes the file's content, make sure it is what it should be."""
    found, line = None, 1
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "kind" and \
                    isinstance(value, yaml.ScalarNode):
                found, line = value.value, value.start_mark.line + 1
    if found == kind:
        return
    other = f" (this is a{'n' if found == 'Inventory' else ''} {found})" if found in KINDS \
        else ""
    article = "an" if kind[0] in "AEIOU" else "a"
    raise InvalidInput(f"not {article} {kind.lower()}: expected a YAML mapping with kind: "
                       f"{kind}{other}", file=str(path), line=line)


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
