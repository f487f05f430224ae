import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import api
from engine.errors import InvalidInput
from engine.language import loader, schema
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
    # What the language layer knows of step types (it imports no step module) is the same set.
    assert set(schema.step_type_keys()) == set(STEP_TYPES)


def test_schema_command_prints_valid_json(runbook_cli):
    result = runbook_cli("schema")
    assert result.code == 0
    assert json.loads(result.out)["title"] == "Runbook v1"


def test_validate_all_shipped_runbooks(runbook_cli):
    result = runbook_cli("validate")
    assert result.code == 0, result.err
    assert "demo.yaml" in result.out


# -- the mark a validated document leaves ------------------------------------------------------

GOOD = HEADER + "steps:\n  - id: a\n    command: {argv: [echo, hi]}\n"
BAD = GOOD + "  - id: b\n    command: {argv: [echo], timeout: soon}\n"


def _imports_jsonschema(path: str, cache: Path) -> bool:
    """Whether loading ``path`` in a new process imports jsonschema."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom engine import api\n"
         f"api.load_runbook({path!r})\nprint('jsonschema' in sys.modules)"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    return done.stdout.strip() == "True"


def test_a_validated_runbook_is_not_validated_again_until_it_changes(
        write_runbook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    path = write_runbook(GOOD)
    assert _imports_jsonschema(str(path), cache)  # validated, and marked
    marks = cache / "runbook" / "validated"
    assert len(list(marks.iterdir())) == 1
    assert not _imports_jsonschema(str(path), cache)  # the same bytes: the mark is enough
    path.write_text(BAD)
    with pytest.raises(InvalidInput) as info:
        api.load_runbook(str(path))
    assert info.value.line == 8 and "'soon' is not of type 'number'" in info.value.message
    assert len(list(marks.iterdir())) == 1  # a refused document leaves none


def test_a_mark_is_for_its_kind_and_the_schemas_it_was_checked_against(
        write_runbook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write_runbook(GOOD)
    api.load_runbook(str(path))
    doc = loader.load(path, "Runbook")
    mark = schema._mark(doc, "runbook")
    assert mark is not None and mark.is_file()
    assert schema._mark(doc, "fragment") != mark
    schema._schemas_digest.cache_clear()
    real = schema.schema_text
    try:
        schema.schema_text = lambda kind: real(kind) + " "  # type: ignore[assignment]
        assert schema._mark(doc, "runbook") != mark
    finally:
        schema.schema_text = real  # type: ignore[assignment]
        schema._schemas_digest.cache_clear()


def test_without_a_home_folder_every_command_validates(
        runbook_cli, write_runbook, tmp_path: Path) -> None:
    """The tests' $HOME cannot be made: nothing is cached, and the command still works."""
    path = write_runbook(GOOD)
    assert runbook_cli("validate", str(path)).code == 0
    assert _imports_jsonschema(str(path), tmp_path / "home-is-a-file" / "cache")


def test_a_cache_folder_that_cannot_be_read_means_validating(
        runbook_cli, write_runbook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking for a mark that cannot be looked for (here a name too long for the file
    system; a folder another user made is the same) is no reason to stop: the document is
    validated, and a bad one gets its one line."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ("x" * 300)))
    assert runbook_cli("validate", str(write_runbook(GOOD))).code == 0
    refused = runbook_cli("validate", str(write_runbook(BAD, name="bad")))
    assert refused.code == 2, refused.out + refused.err
    assert "'soon' is not of type 'number'" in refused.out + refused.err
    assert "unexpected error" not in refused.out + refused.err


@pytest.fixture
def planted(write_runbook, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A runbook that does not validate, and a mark for it left where the engine looks."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    path = write_runbook(BAD)
    mark = schema._mark(loader.load(path, "Runbook"), "runbook")
    assert mark is not None and mark.is_relative_to(cache)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch()
    return path, mark


def _still_refused(path: Path) -> None:
    with pytest.raises(InvalidInput, match="'soon' is not of type 'number'"):
        api.load_runbook(str(path))


def test_a_mark_others_could_have_left_does_not_count(planted, tmp_path: Path) -> None:
    path, mark = planted
    mark.parent.chmod(0o777)  # anyone may write there
    _still_refused(path)
    mark.parent.chmod(0o700)
    elsewhere = tmp_path / "elsewhere"  # a folder of marks that is a link to another
    mark.parent.rename(elsewhere)
    mark.parent.symlink_to(elsewhere)
    _still_refused(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_a_mark_in_another_users_folder_does_not_count(planted) -> None:
    """As with ``sudo`` keeping the user's $HOME: root does not take the user's word."""
    path, mark = planted
    cache = mark.parent.parent.parent
    for folder in (mark, mark.parent, mark.parent.parent, cache):
        os.chown(folder, 65534, 65534)
    _still_refused(path)
    assert os.stat(mark.parent).st_uid == 65534 and len(list(mark.parent.iterdir())) == 1


def test_a_mark_that_is_a_link_does_not_count(planted) -> None:
    path, mark = planted
    mark.unlink()
    mark.symlink_to(path)
    _still_refused(path)
