"""Runbook model records built directly, as the loader would build them from YAML."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.language.model import Param, Runbook, Step

FILE = "/work/book.yaml"


def step(step_id: str, spec: Mapping[str, Any] | None = None, *, kind: str = "command",
         name: str | None = None, **fields: Any) -> Step:
    """A step of type ``kind`` (a command echoing its id unless given a body)."""
    body = spec if spec is not None else {"argv": ["echo", step_id]}
    return Step(id=step_id, type=kind, spec=body, name=name or step_id,
                file=fields.pop("file", FILE), **fields)


def runbook(*steps: Step, params: tuple[Param, ...] = (),
            bind: Mapping[str, str] | None = None) -> Runbook:
    return Runbook(name="book", description="", path=Path(FILE), sha256="a" * 64,
                   params=params, vars={}, steps=steps, bind=dict(bind or {}))
