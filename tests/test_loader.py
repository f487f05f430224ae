from pathlib import Path

import pytest

from engine import api
from engine.errors import InvalidInput
from engine.language import loader
from tests.conftest import HEADER


def test_malformed_yaml_names_file_and_line(write_runbook, runbook_cli):
    path = write_runbook(HEADER + "steps:\n  - id: a\n    command: {argv: [true]\n  - id: b\n")
    result = runbook_cli("validate", str(path))
    assert result.code == 2
    assert f"{path}:7: malformed YAML: did not find expected ',' or '}}' " \
        "(while parsing a flow mapping started on line 6)" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_alias_bomb_is_refused_quickly(write_runbook):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write_runbook("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match="aliases expand to more than") as info:
        loader.load(path, "Runbook")
    assert info.value.file == str(path)


def test_small_anchors_still_work(write_runbook):
    path = write_runbook(HEADER + """
    x-cmd: &cmd {argv: [echo, hi]}
    steps:
      - {id: a, command: *cmd}
    """.replace("\n    ", "\n"))
    doc = loader.load(path, "Runbook")
    assert doc.data["steps"][0]["command"] == {"argv": ["echo", "hi"]}


def test_duplicate_keys_are_refused_with_their_line(write_runbook):
    path = write_runbook(HEADER + "steps:\n  - id: a\n    id: b\n    command: {argv: [true]}\n")
    with pytest.raises(InvalidInput, match="duplicate key 'id'") as info:
        loader.load(path, "Runbook")
    assert info.value.line == 6


@pytest.mark.parametrize("name", ["../etc/passwd", "..", "a/../../b", "x;rm"])
def test_runbook_names_cannot_escape(name, runbook_cli):
    result = runbook_cli("show", name)
    assert result.code == 2
    assert "runbook" in result.err


def test_runbooks_are_found_by_name_in_the_working_folder(isolated: Path):
    folder = isolated / "runbooks"
    folder.mkdir()
    (folder / "mine.yaml").write_text(HEADER.replace("name: book", "name: mine") +
                                      "steps: [{id: a, command: {argv: ['true']}}]\n")
    assert api.load_runbook("mine").path == folder / "mine.yaml"
    assert "mine" in loader.list_names("runbooks")
    assert "demo" in loader.list_names("runbooks")  # the shipped ones too


def test_missing_runbook_is_invalid_input(runbook_cli):
    result = runbook_cli("plan", "no-such-book")
    assert result.code == 2
    assert "no runbook named 'no-such-book'" in result.err
