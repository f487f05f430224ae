"""Validate parsed documents against ``schemas/*.json`` and say where the problem is.

After this module, code works on known shapes only: unknown keys never get past here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from engine.errors import InvalidInput
from engine.loader import PROJECT_ROOT, Document

SCHEMA_DIR = PROJECT_ROOT / "schemas"
STEP_TYPE_KEYS = ("command", "ansible", "assert", "set", "wait", "approval", "record")


@cache
def schema(kind: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{kind}.schema.json").open() as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def _validator(kind: str) -> Draft202012Validator:
    from referencing import Registry, Resource

    resources = [Resource.from_contents(schema(p.name.removesuffix(".schema.json")))
                 for p in SCHEMA_DIR.glob("*.schema.json")]
    registry: Registry[Any] = Registry().with_resources(
        (str(r.contents["$id"]), r) for r in resources)
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
