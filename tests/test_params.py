import os

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
    (["--env", "dev", "--fast", "maybe"], "--fast expects true or false"),
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
    result = runbook_cli("run", str(path), "--env", "qa", "--fast", "yes", "--output", "json")
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
