"""Validate parsed documents against the JSON Schemas and say where the problem is.

After this module, code works on known shapes only: unknown keys never get past here. The
schemas are package data (``engine/schemas``, the same files as the checkout's top-level
``schemas/`` that editors point at), so an installed engine validates from any folder.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from engine.errors import InvalidInput
from engine.loader import Document
from engine.steps import STEP_TYPES

SCHEMA_KINDS = ("runbook", "fragment", "inventory")
STEP_TYPE_KEYS = tuple(STEP_TYPES)


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
    from referencing import Registry, Resource

    shipped = [Resource.from_contents(schema(name)) for name in SCHEMA_KINDS]
    registry: Registry[Any] = Registry().with_resources(
        (str(r.contents["$id"]), r) for r in shipped)
    return Draft202012Validator(schema(kind), registry=registry)


def validate(doc: Document, kind: str) -> None:
    """Raise InvalidInput naming file, line and JSON path of the first problem found."""
    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(doc.data))
    if error is None:
        return
    path = tuple(error.absolute_path)
    raise InvalidInput(_describe(error), file=str(doc.path),
                       line=doc.line_of(path), path=_json_path(path))


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
                    f"step types are: {', '.join(STEP_TYPE_KEYS)}")
        return (f"unknown field {', '.join(map(repr, extra))}; "
                f"expected one of: {', '.join(sorted(allowed))}")
    if error.validator == "oneOf" and _looks_like_step(error):
        present = [k for k in STEP_TYPE_KEYS if isinstance(instance, dict) and k in instance]
        if isinstance(instance, dict) and "include" in instance and present:
            return "a step either includes a fragment or has a step type, not both"
        if present:
            return f"a step has exactly one step type, this one has {', '.join(present)}"
        return f"a step needs a step type, one of: {', '.join(STEP_TYPE_KEYS)}"
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
