import json

import pytest

from engine import api, schema
from engine.errors import InvalidInput
from engine.steps import STEP_TYPES
from tests.conftest import HEADER


def error_of(write_runbook, body: str) -> InvalidInput:
    path = write_runbook(HEADER + body)
    with pytest.raises(InvalidInput) as info:
        api.load_runbook(str(path))
    return info.value


def test_schema_violation_names_line_path_and_expectation(write_runbook):
    err = error_of(write_runbook, """steps:
  - id: ok
    command: {argv: [echo]}
  - id: bad
    command: {argv: [echo], timeout: "soon"}
""")
    assert err.line == 8
    assert err.path == "$.steps[1].command.timeout"
    assert "'soon' is not of type 'number'" in err.message


def test_unknown_step_type(write_runbook):
    err = error_of(write_runbook, "steps:\n  - id: a\n    shell: rm -rf /\n")
    assert "unknown step type or field 'shell'" in err.message
    assert "command, ansible, assert, set, wait, approval" in err.message
    assert err.line == 5


def test_a_step_has_exactly_one_type(write_runbook):
    err = error_of(write_runbook, "steps:\n  - id: a\n    command: {argv: [x]}\n"
                                  "    wait: {seconds: 1}\n")
    assert "exactly one step type, this one has command, wait" in err.message
    err = error_of(write_runbook, "steps:\n  - id: a\n    name: nothing\n")
    assert "a step needs a step type" in err.message


def test_duplicate_step_ids_even_inside_on_failure(write_runbook):
    err = error_of(write_runbook, """steps:
  - id: a
    command: {argv: [x]}
    on_failure:
      - id: a
        command: {argv: [y]}
""")
    assert "duplicate step id 'a' (first defined at book.yaml:5)" in err.message
    assert err.line == 8


def test_bad_step_id_and_missing_steps(write_runbook):
    err = error_of(write_runbook, "steps:\n  - id: Bad_Id\n    command: {argv: [x]}\n")
    assert err.path == "$.steps[0].id"
    err = error_of(write_runbook, "vars: {}\n")
    assert "'steps' is required" in err.message


def test_param_default_must_match_its_type(write_runbook):
    err = error_of(write_runbook, "params:\n  n: {type: integer, default: 'x'}\n"
                                  "steps: [{id: a, command: {argv: [x]}}]\n")
    assert "'x' is not of the param's type integer" in err.message
    assert err.line == 5


def test_template_syntax_error_is_caught_at_validation(write_runbook):
    err = error_of(write_runbook, "steps:\n  - id: a\n    command: {argv: ['{{ oops ']}\n")
    assert "template error in" in err.message


def test_every_step_type_in_the_schema_has_a_module():
    step = schema.schema("runbook")["$defs"]["step"]
    declared = {next(iter(alt["required"])) for alt in step["oneOf"]} - {"include"}
    assert declared == set(STEP_TYPES)


def test_schema_command_prints_valid_json(runbook_cli):
    result = runbook_cli("schema")
    assert result.code == 0
    assert json.loads(result.out)["title"] == "Runbook v1"


def test_validate_all_shipped_runbooks(runbook_cli):
    result = runbook_cli("validate")
    assert result.code == 0, result.err
    assert "demo.yaml" in result.out
