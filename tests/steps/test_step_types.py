"""Each step type is one module: its schema, conditions and plan description live there."""

import json

from engine.language.loader import PROJECT_ROOT
from engine.steps import STEP_TYPES, with_step_types


def test_the_shipped_schema_holds_each_step_type_s_own_schema():
    path = PROJECT_ROOT / "schemas" / "runbook.schema.json"
    shipped = json.loads(path.read_text(encoding="utf-8"))
    # Otherwise: uv run python scripts/step-schemas.py
    assert shipped == with_step_types(shipped)
    assert [c["required"][0] for c in shipped["$defs"]["step"]["oneOf"]] == [
        *STEP_TYPES, "include"]


def test_a_step_type_s_condition_fields_are_fields_of_its_body():
    for step_type in STEP_TYPES.values():
        fields = step_type.schema.get("properties", {})
        assert set(step_type.condition_fields) <= set(fields), step_type.key


def test_the_plan_describes_a_step_by_its_type(write_runbook, runbook_cli):
    path = write_runbook("""\
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: book}
        steps:
          - id: hi
            command: {argv: [echo, hi]}
          - id: pause
            wait: {seconds: 1}
          - id: facts
            set: {colour: blue}
          - id: check
            assert: {that: ["facts.colour == 'blue'"]}
        """)
    result = runbook_cli("plan", str(path))
    assert result.code == 0, result.out + result.err
    for line in ("$ echo hi", "wait 1 s", "set colour = 'blue'", "check: facts.colour == 'blue'"):
        assert line in result.out
