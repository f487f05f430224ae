"""The shipped runbooks against hostile values and seeded secrets, in the sandbox.

Every param of every shipped runbook gets a template that would run a command if anything
rendered it; the plans and runs execute nothing. Sentinel values in every kind of secret
variable never reach a file under the state folder, the state store, or the output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import api
from engine.language.loader import list_names
from tests.runbooks.test_promote import promote

VALID = {
    "promote": ["--from", "uat1", "--to", "staging"],
    "rollback": ["--env", "qa"],
    "hotfix": ["--tag", "1.4.3", "--reason", "CVE-2026-1234"],
    "db-rollback": ["--env", "qa"],
    "db-restore": ["--env", "qa", "--latest"],
    "demo": ["--release", "r1"],
}
SENTINELS = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-key-5521",
    "AWS_SESSION_TOKEN": "sentinel-aws-session-token-5522",
    "PGPASSWORD": "sentinel-pgpassword-5523",
    "QUIKAPP_QA_DB_PASSWORD": "sentinel-inventory-password-env-5524",
    "GITHUB_TOKEN": "sentinel-github-token-5525",
    "RELEASE_SIGNING_SECRET": "sentinel-signing-secret-5526",
}


def every_param() -> list[tuple[str, str]]:
    out = []
    for name in VALID:
        book = api.load_runbook(name)
        # A boolean is a switch (--x / --no-x): it takes no value to carry a template.
        out += [(name, p.name) for p in book.params if not p.secret and p.type != "boolean"]
    return out


def with_value(runbook: str, param: str, value: str) -> list[str]:
    flag = "--" + param.replace("_", "-")
    args = list(VALID[runbook])
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


def test_the_list_covers_every_shipped_runbook():
    assert set(VALID) == set(list_names("runbooks"))


@pytest.mark.parametrize(("runbook", "param"), every_param(),
                         ids=[f"{r}-{p}" for r, p in every_param()])
def test_a_template_in_any_param_runs_nothing(runbook, param, in_shared_sandbox, runbook_cli,
                                              isolated):
    marks = isolated / "marks"
    marks.mkdir()
    payload = (f'{{{{ lookup("pipe", "touch {marks}/pipe") }}}}'
               f"{{% set x = lookup('pipe', 'touch {marks}/block') %}}")
    result = runbook_cli("plan", runbook, *with_value(runbook, param, payload))
    assert list(marks.iterdir()) == []
    assert result.code in (0, 1, 2), result.out + result.err
    if result.code == 0:  # accepted: it is shown as given, not as something it became
        assert payload in result.out


def test_a_template_in_the_hotfix_reason_reaches_the_cab_literally(in_shared_sandbox,
                                                                    runbook_cli, isolated):
    marks = isolated / "marks"
    marks.mkdir()
    payload = f'CVE {{{{ lookup("pipe", "touch {marks}/pipe") }}}}'
    result = runbook_cli("run", "hotfix", "--tag", "1.4.3", "--reason", payload)
    assert result.code == 3, result.out + result.err  # at the emergency CAB gate
    assert f"Reason: {payload}" in result.out
    run_id = result.out.split()[1]
    assert runbook_cli("abort", run_id).code == 0
    assert list(marks.iterdir()) == []


def sweep(root: Path, texts: list[str]) -> list[str]:
    """Where any sentinel shows up: files under ``root`` and the texts printed."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{name} in {path}" for name, value in SENTINELS.items()
                     if value.encode() in data]
    for text in texts:
        hits += [f"{name} in output" for name, value in SENTINELS.items() if value in text]
    return hits


def seeded(monkeypatch: pytest.MonkeyPatch, runbook_cli):  # type: ignore[no-untyped-def]
    """Every sentinel in the environment, and a CLI that keeps what it printed."""
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    printed: list[str] = []

    def cli(*args: str):  # type: ignore[no-untyped-def]
        result = runbook_cli(*args)
        printed.extend([result.out, result.err])
        return result

    return cli, printed


@pytest.mark.parametrize("output", ["text", "json", "markdown"])
@pytest.mark.parametrize("name", sorted(VALID))
def test_no_secret_of_the_environment_is_in_a_plan(name, output, in_shared_sandbox,
                                                   runbook_cli, isolated, monkeypatch,
                                                   tmp_path):
    cli, printed = seeded(monkeypatch, runbook_cli)
    # The sentinels are wrong credentials too: a plan may fail, and its error must not tell them.
    result = cli("plan", name, *VALID[name], "--output", output)
    assert name in result.out, result.out + result.err
    assert sweep(tmp_path, printed) == []


def run_promote(cli, isolated):  # type: ignore[no-untyped-def]
    return promote(cli, "uat1", "staging")


def run_rollback(cli, isolated):  # type: ignore[no-untyped-def]
    result = cli("run", "rollback", "--env", "qa")
    assert result.code == 0, result.out + result.err
    return result.out.split()[1]


def run_db_restore(cli, isolated):  # type: ignore[no-untyped-def]
    result = cli("run", "db-restore", "--env", "qa", "--latest")
    assert result.code == 0, result.out + result.err
    return result.out.split()[1]


def run_demo(cli, isolated):  # type: ignore[no-untyped-def]
    result = cli("run", "demo", "--release", "r1", "--workdir", str(isolated / "demo"))
    assert result.code == 3, result.out + result.err
    run_id = result.out.split()[1]
    assert cli("approve", run_id, "--step", "sign-off", "--by", "alice").code == 0
    assert cli("resume", run_id).code == 0  # its playbook runs after the sign-off
    return run_id


@pytest.mark.parametrize("run", [run_promote, run_rollback, run_db_restore, run_demo],
                         ids=["promote", "rollback", "db-restore", "demo"])
def test_no_secret_of_the_environment_is_written_or_printed_by_a_run(
        run, sandbox, runbook_cli, isolated, monkeypatch, tmp_path):
    cli, printed = seeded(monkeypatch, runbook_cli)
    run_id = run(cli, isolated)
    for command in (["status"], ["status", run_id], ["history"], ["audit", "verify", "--full"],
                    ["audit", "export", "--run", run_id], ["lock", "list"]):
        cli(*command)
        cli(*command, "--output", "json")
    home = Path(os.environ["RUNBOOK_HOME"])
    assert (home / "state.db").exists() and list((home / "runs").rglob("command"))
    assert sweep(tmp_path, printed) == []
