"""The command line behaves as every CLI does: no abbreviations, switches, help that helps,
quiet on a closed pipe, filters that refuse what they do not know."""

import json
import os
import subprocess
import sys

from tests.conftest import HEADER

PARAMS_BOOK = HEADER + """\
params:
  out: {type: string, default: "-", description: "where the note goes"}
  inv: {type: string, default: "-"}
  dry: {type: string, default: "-"}
  latest: {type: boolean, default: true, description: "use the newest"}
  fast: {type: boolean}
steps:
  - id: show
    command:
      argv: [echo, "{{ params.out }} {{ params.inv }} {{ params.dry }}",
             "{{ params.latest }} {{ params.fast }}"]
"""


def stdout_of(result):
    return result.json()["steps"][0]["result"]["stdout"].strip()


def test_a_param_that_abbreviates_an_engine_option_is_the_param(write_runbook, runbook_cli):
    path = write_runbook(PARAMS_BOOK)
    result = runbook_cli("run", str(path), "--out", "note.txt", "--inv", "mine", "--dry", "yes",
                         "--output", "json")
    assert result.code == 0, result.err
    assert stdout_of(result) == "note.txt mine yes True False"


def test_an_abbreviated_engine_option_is_refused(write_runbook, runbook_cli):
    result = runbook_cli("status", "--lim", "3")
    assert result.code == 2 and "--lim" in result.err


def test_boolean_params_are_switches_with_their_defaults(write_runbook, runbook_cli):
    path = write_runbook(PARAMS_BOOK)
    on = runbook_cli("run", str(path), "--no-latest", "--fast", "--output", "json")
    assert on.code == 0, on.err
    assert stdout_of(on) == "- - - False True"
    refused = runbook_cli("run", str(path), "--fast", "true")
    assert refused.code == 2 and "unknown param true" in refused.err


def test_a_required_boolean_is_refused_by_validate(write_runbook, runbook_cli):
    path = write_runbook(HEADER + "params:\n  go: {type: boolean, required: true}\n"
                         "steps: [{id: a, command: {argv: [echo]}}]\n")
    result = runbook_cli("validate", str(path))
    assert result.code == 2
    assert f"{path}:5:" in result.err and "cannot be required" in result.err


COLLIDING = """\
params:
  region: {{type: string, default: a}}
  {name}: {{type: {type}, default: {default}}}
steps: [{{id: a, command: {{argv: [echo]}}}}]
"""


def test_a_param_named_as_an_engine_option_is_refused(write_runbook, runbook_cli):
    for name, ptype, default, flag in (("output", "string", "x", "--output"),
                                       ("dry_run", "boolean", "false", "--dry-run"),
                                       ("help", "string", "x", "--help"),
                                       ("accept-drift", "string", "x", "--accept-drift")):
        path = write_runbook(HEADER + COLLIDING.format(name=name, type=ptype, default=default))
        for args in (("validate", str(path)), ("run", str(path)), ("plan", str(path))):
            result = runbook_cli(*args)
            assert result.code == 2, (name, args)
            lines = result.err.strip().splitlines()
            assert len(lines) == 1
            assert f"{path}:6:" in lines[0] and repr(name) in lines[0] and flag in lines[0]
        assert runbook_cli("status", "--output", "json").json() == []


def test_run_and_plan_help_list_the_runbooks(runbook_cli):
    for command in ("run", "plan"):
        result = runbook_cli(command, "--help")
        assert result.code == 0, result.err
        assert "promote" in result.out and "A local tour of the engine" in result.out


def test_run_name_help_lists_its_params(runbook_cli):
    result = runbook_cli("run", "db-restore", "--help")
    assert result.code == 0
    assert "--latest/--no-latest" in result.out
    assert "default False" in result.out and "Restore from the newest" in result.out


def test_run_without_a_name_says_how_to_list_them(runbook_cli):
    result = runbook_cli("run")
    assert result.code == 2 and "runbook run --help" in result.err


def test_a_closed_pipe_ends_quietly(write_runbook):
    path = write_runbook(HEADER + "steps: [{id: a, command: {argv: [echo, hi]}}]\n")
    ran = subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--output", "json"],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    for args in (["status", run_id], ["status"], ["history"], ["list"]):
        read, write = os.pipe()
        os.close(read)  # the reader has gone before a line was written, as with `| head -0`
        proc = subprocess.run([sys.executable, "-m", "engine", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True)
        os.close(write)
        assert proc.returncode == 141, (args, proc.stderr)
        assert proc.stderr == ""


def test_unknown_history_filters_name_the_known_ones(runbook_cli, monkeypatch):
    monkeypatch.setenv("RUNBOOK_INVENTORY", "quikapp")
    bad_kind = runbook_cli("history", "--kind", "nonsense")
    assert bad_kind.code == 2
    assert "nonsense" in bad_kind.err and "promotion" in bad_kind.err
    bad_env = runbook_cli("history", "--env", "prod")
    assert bad_env.code == 2
    assert "prod" in bad_env.err and "staging" in bad_env.err
    known = runbook_cli("history", "--env", "live", "--kind", "promotion")
    assert known.code == 0
