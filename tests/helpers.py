"""Runbook fragments shared by tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEADER

APPEND = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))"


def append_step(step_id: str, log: str = "log.txt", extra: str = "") -> str:
    """A step whose side effect is one line in ``log``: it shows how often the step ran."""
    return (f"  - id: {step_id}\n"
            f"    command: {{argv: [python3, -c, \"{APPEND}\", {log}, {step_id}]}}\n{extra}")


def book(*steps: str, params: str = "") -> str:
    return HEADER + params + "steps:\n" + "".join(steps)


def lines(path: Path | str) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []
