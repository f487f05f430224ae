"""Write each step type's body schema, from its module in engine/steps/, into
schemas/runbook.schema.json: `uv run python scripts/step-schemas.py` (tests/steps/test_step_types.py
checks it was run)."""

import json
from pathlib import Path

from engine.steps import with_step_types

path = Path(__file__).resolve().parent.parent / "schemas" / "runbook.schema.json"
doc = with_step_types(json.loads(path.read_text(encoding="utf-8")))
path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"wrote {path}")
