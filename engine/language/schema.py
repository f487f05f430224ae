"""Validate parsed documents against the JSON Schemas and say where the problem is.

After this module, code works on known shapes only: unknown keys never get past here. The
schemas are package data (``engine/schemas``, the same files as the checkout's top-level
``schemas/`` that editors point at), so an installed engine validates from any folder.

A document that validated leaves a mark named by the digest of its bytes and of the schemas
in the user's cache (``$XDG_CACHE_HOME/runbook/validated/``, by default
``~/.cache/runbook/validated/``): the same bytes against the same schemas validate the same,
and the next command skips jsonschema (0.1-0.15 s to import and check, on a command that may
be rolling production back). Anything edited, in the document or the schemas, has another
digest and is validated again. Without a home folder to hold the cache, every command
validates. A mark counts only as a file of the user's, in a folder of the user's that nobody
else can write (not a link): one that anyone else could have left would let through a
document that never validated. A cache that is another user's (``sudo`` keeping $HOME) is
neither read nor written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput
from engine.language.loader import Document

if TYPE_CHECKING:
    import jsonschema
    from jsonschema import Draft202012Validator

SCHEMA_KINDS = ("runbook", "fragment", "inventory")


def schema_file(kind: str) -> Traversable:
    """The shipped JSON Schema of a ``kind`` (one of SCHEMA_KINDS)."""
    return resources.files("engine") / "schemas" / f"{kind}.schema.json"


def schema_text(kind: str) -> str:
    return schema_file(kind).read_text(encoding="utf-8")


@cache
def schema(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_text(kind))
    return data


@cache
def _validator(kind: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    shipped = [Resource.from_contents(schema(name)) for name in SCHEMA_KINDS]
    registry: Registry[Any] = Registry().with_resources(
        (str(r.contents["$id"]), r) for r in shipped)
    return Draft202012Validator(schema(kind), registry=registry)


@cache
def step_type_keys() -> tuple[str, ...]:
    """The step types the shipped runbook schema knows, in its order: each is a property of
    a step that refers to its own definition (``scripts/step-schemas.py`` writes them from
    the step types' modules)."""
    props = schema("runbook")["$defs"]["step"]["properties"]
    return tuple(key for key, value in props.items() if value == {"$ref": f"#/$defs/{key}"})


def validate(doc: Document, kind: str) -> None:
    """Raise InvalidInput naming file, line and JSON path of the first problem found."""
    mark = _mark(doc, kind)
    if mark is not None and _marked(mark):
        return
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(doc.data))
    if error is None:
        if mark is not None:
            _leave(mark)
        return
    path = tuple(error.absolute_path)
    raise InvalidInput(_describe(error), file=str(doc.path),
                       line=doc.line_of(path), path=_json_path(path))


@cache
def _schemas_digest() -> str:
    digest = hashlib.sha256()
    for name in SCHEMA_KINDS:
        digest.update(schema_text(name).encode() + b"\0")
    return digest.hexdigest()


def _mark(doc: Document, kind: str) -> Path | None:
    """Where the mark of ``doc`` validated as ``kind`` is; None without a home folder, or
    when the cache is another user's (``sudo`` keeping the user's $HOME)."""
    given = os.environ.get("XDG_CACHE_HOME", "")
    home = Path(os.environ.get("HOME") or "/nonexistent")
    try:  # a home that cannot be looked at (a folder of another user's on the way) is none
        if given and Path(given).is_absolute():
            cache_root = Path(given)
        elif home.is_absolute() and home.is_dir():
            cache_root = home / ".cache"
        else:
            return None
        if os.lstat(cache_root).st_uid != os.geteuid():
            return None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    key = hashlib.sha256(f"{kind}\0{_schemas_digest()}\0{doc.sha256}".encode())
    return cache_root / "runbook" / "validated" / key.hexdigest()


def _marked(mark: Path) -> bool:
    """Whether the mark is there, a file of this user's in a folder only this user can write:
    a mark anyone else could have left would let a document through that never validated. A
    cache that cannot be looked in (a folder another user made, a name too long) only costs
    time."""
    try:
        folder = _own_folder(mark.parent)
    except OSError:
        return False
    try:
        found = os.stat(mark.name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return False
    finally:
        os.close(folder)
    return stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()


def _own_folder(path: Path) -> int:
    """An open descriptor of the folder ``path``, not a link, this user's and writable by
    nobody else; else OSError."""
    folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    found = os.fstat(folder)
    if found.st_uid != os.geteuid() or found.st_mode & 0o022:
        os.close(folder)
        raise PermissionError(f"{path} is not this user's alone")
    return folder


def _leave(mark: Path) -> None:
    """The mark, made whole or not at all; a folder that cannot take it only costs time."""
    try:
        mark.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = _own_folder(mark.parent)
        try:
            os.close(os.open(mark.name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600,
                             dir_fd=folder))
        finally:
            os.close(folder)
    except OSError:
        pass


def _json_path(path: tuple[str | int, ...]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error: jsonschema.ValidationError) -> str:
    instance = error.instance
    is_step = _looks_like_step(error)
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set(_props(error))
        extra = sorted(k for k in instance if k not in allowed)
        if is_step:
            return (f"unknown step type or field {', '.join(map(repr, extra))}; "
                    f"step types are: {', '.join(step_type_keys())}")
        return (f"unknown field {', '.join(map(repr, extra))}; "
                f"expected one of: {', '.join(sorted(allowed))}")
    if error.validator == "oneOf" and _looks_like_step(error):
        present = [k for k in step_type_keys() if isinstance(instance, dict) and k in instance]
        if isinstance(instance, dict) and "include" in instance and present:
            return "a step either includes a fragment or has a step type, not both"
        if present:
            return f"a step has exactly one step type, this one has {', '.join(present)}"
        return f"a step needs a step type, one of: {', '.join(step_type_keys())}"
    if error.validator == "oneOf" and "seconds" in _props(error):
        return "wait needs either 'seconds', or 'until' with a 'timeout'"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "pattern":
        return f"{instance!r} does not match the pattern {error.validator_value!r}"
    if error.validator == "const":
        return f"expected {error.validator_value!r}, got {instance!r}"
    return error.message


def _props(error: jsonschema.ValidationError) -> dict[str, Any]:
    props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return dict(props)


def _looks_like_step(error: jsonschema.ValidationError) -> bool:
    return "on_failure" in _props(error)
