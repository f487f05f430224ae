import os
import subprocess

import pytest

from tests.conftest import HEADER

BOOK = HEADER + """
params:
  env: {type: string, required: true, enum: [dev, qa, live]}
  tag: {type: string, pattern: "^[A-Za-z0-9._-]{1,128}$"}
  count: {type: integer, default: 2}
  fast: {type: boolean, default: false}
  token: {type: string, secret: true}
steps:
  - id: show
    command:
      argv: [python3, -c, "import sys; print(sys.argv[1:])", "{{ params.env }}",
             "{{ params.count + 1 }}", "{{ params.fast }}", "{{ params.token | default('none') }}"]
    register: out
"""


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "dev", "--colour", "red"], "unknown param --colour"),
    ([], "missing required param --env"),
    (["--env", "prod"], "--env 'prod' is not one of: dev, qa, live"),
    (["--env", "dev", "--tag", "bad tag!"], "does not match"),
    (["--env", "dev", "--count", "two"], "--count expects an integer, got 'two'"),
    (["--env", "dev", "--fast", "maybe"], "unknown param maybe"),
    (["--env", "dev", "--token", "s3cret"], "unknown param --token"),
])
def test_bad_params_exit_2_and_record_nothing(args, message, write_runbook, runbook_cli):
    path = write_runbook(BOOK)
    result = runbook_cli("run", str(path), *args)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert runbook_cli("status", "--output", "json").json() == []


def test_params_are_typed_and_defaulted(write_runbook, runbook_cli):
    path = write_runbook(BOOK)
    result = runbook_cli("run", str(path), "--env", "qa", "--fast", "--output", "json")
    assert result.code == 0, result.out
    step = result.json()["steps"][0]
    assert step["result"]["stdout"].strip() == "['qa', '3', 'True', 'none']"


def test_secret_param_comes_from_the_environment_and_is_never_shown(
        write_runbook, runbook_cli, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SECRET_TOKEN", "hunter2-xyz")
    path = write_runbook(BOOK)
    result = runbook_cli("run", str(path), "--env", "dev")
    assert result.code == 0, result.err
    assert "hunter2-xyz" not in result.out + result.err
    assert "***" in result.out
    run_id = result.out.split()[1]
    detail = runbook_cli("status", run_id, "--output", "json")
    assert "hunter2-xyz" not in detail.out
    db = os.environ["RUNBOOK_HOME"] + "/state.db"
    with open(db, "rb") as fh:
        assert b"hunter2-xyz" not in fh.read()
    plan = runbook_cli("plan", str(path), "--env", "dev", "--output", "json")
    assert "hunter2-xyz" not in plan.out


BOUNDED = HEADER + """
params:
  minutes: {type: number, default: 30, minimum: 1, maximum: 240}
  count: {type: integer, minimum: -3}
steps:
  - id: show
    command: {argv: [python3, -c, "import sys; print(sys.argv[1:])", "{{ params.minutes }}",
                     "{{ params.count | default('none') }}"]}
"""


@pytest.mark.parametrize(("args", "shown"), [
    ([], "['30', 'none']"),
    (["--minutes", "1", "--count", "-3"], "['1', '-3']"),
    (["--minutes", "240.0", "--count", "+7"], "['240', '7']"),
    (["--minutes", "2.5"], "['2.5', 'none']"),
])
def test_values_within_bounds_are_taken(args, shown, write_runbook, runbook_cli):
    path = write_runbook(BOUNDED)
    result = runbook_cli("run", str(path), *args, "--output", "json")
    assert result.code == 0, result.out
    assert result.json()["steps"][0]["result"]["stdout"].strip() == shown


@pytest.mark.parametrize(("args", "message"), [
    (["--minutes", "0.5"], "--minutes 0.5 is below the minimum 1"),
    (["--minutes", "240.5"], "--minutes 240.5 is above the maximum 240"),
    (["--minutes", "nan"], "--minutes expects a finite number, got 'nan'"),
    (["--minutes", "1e999"], "--minutes expects a finite number, got '1e999'"),
    (["--minutes", "0x10"], "--minutes expects a finite number"),
    (["--count", "-4"], "--count -4 is below the minimum -3"),
    (["--count", "1_000"], "--count expects an integer, got '1_000'"),
    (["--count", "٣"], "--count expects an integer"),
    (["--count", "1" * 19], "--count expects an integer of at most 18 digits"),
])
def test_values_out_of_bounds_or_not_finite_are_refused(args, message, write_runbook,
                                                         runbook_cli):
    path = write_runbook(BOUNDED)
    result = runbook_cli("run", str(path), *args)
    assert result.code == 2
    assert f"{path}: {message}" in result.err
    assert runbook_cli("status", "--output", "json").json() == []


@pytest.mark.parametrize(("spec", "message"), [
    ("{type: string, minimum: 1}", "minimum and maximum apply to integer and number params"),
    ("{type: integer, minimum: 5, maximum: 1}", "minimum 5 is above maximum 1"),
    ("{type: number, maximum: .inf}", ".inf and .nan are not numbers"),
    ("{type: integer, enum: [1, 9], maximum: 5}", "9 is outside the param's minimum and maximum"),
    ("{type: integer, minimum: 'one'}", "'one' is not of type 'number'"),
])
def test_bounds_are_checked_when_the_runbook_is_loaded(spec, message, write_runbook,
                                                       runbook_cli):
    path = write_runbook(HEADER + f"params:\n  n: {spec}\nsteps:\n  - {{id: a, set: {{x: 1}}}}\n")
    result = runbook_cli("validate", str(path))
    assert result.code == 2
    assert f"{path}:5: " in result.err and message in result.err


def test_show_tells_the_bounds(runbook_cli):
    shown = runbook_cli("show", "hotfix").out
    assert "--verify-minutes" in shown and "at least 1, at most 240" in shown
    assert "at least 1, at most 2147483647" in runbook_cli("show", "rollback").out


BRANCHES = ["hotfix/1.4.3", "hotfix/CVE-2026-1234", "release/2.0", "a", "x.y/z_w", "-f",
            "hotfix/../main", "hotfix/.hidden", ".hidden", "a..b", "a//b", "a/", "/a",
            "a.", "a.lock", "hotfix/x.lock/y", "HEAD", "a b", "a~1", "a^", "a:b", "a?",
            "a*", "a[", "a\\b", "a@{1}", "@", "x/-y", "hotfix/1.4.3.lock.d"]


def test_hotfix_branch_names_are_ones_git_accepts():
    from engine import api
    from engine.language import patterns

    branch = api.load_runbook("hotfix").param("branch")
    assert branch is not None and branch.pattern
    for name in BRANCHES:
        ours = patterns.fullmatch(branch.pattern, name)
        git = subprocess.run(["git", "check-ref-format", "--branch", name],
                             capture_output=True).returncode == 0
        assert git or not ours, f"{name!r} is taken by the runbook but not by git"
    for name in ("hotfix/../main", "-f", ".hidden", "a.lock", "a//b", "a/", "a."):
        assert not patterns.fullmatch(branch.pattern, name), name
    assert patterns.fullmatch(branch.pattern, "hotfix/1.4.3")


@pytest.mark.parametrize("runbook", ["hotfix", "promote"])
def test_image_tags_follow_the_oci_grammar(runbook):
    from engine import api
    from engine.language import patterns

    tag = api.load_runbook(runbook).param("tag")
    assert tag is not None and tag.pattern
    for good in ("1.4.3", "uat1-1.4.2", "_x", "v1.4.4-crashloop", "A" * 120):
        assert patterns.fullmatch(tag.pattern, good), good
    for bad in ("..", ".hidden", "-1.4.2", "A" * 121, "a/b", "", "a b", "1.4.3\n"):
        assert not patterns.fullmatch(tag.pattern, bad), bad
