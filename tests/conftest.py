"""Shared fixtures: every test works in its own folder, and writing to the real home folder
or to ./.runbook fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import cli

REPO = Path(__file__).resolve().parent.parent
# The environment the tests were started with, before each test is isolated from it.
OUTER_ENV = dict(os.environ)
POINTERS = ("RUNBOOK_INVENTORY", "KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
            "RUNBOOK_STATE", "RUNBOOK_RUNBOOKS_PATH", "RUNBOOK_INVENTORIES_PATH")


# Tests wait on subprocesses (ansible-playbook, runbook, the sandbox) more than they compute:
# more workers than the two cores of CI keeps the cores busy.
WORKERS = 4


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Run on WORKERS pytest-xdist workers unless told how many (``-n N``; ``-n 0`` or
    ``-p no:xdist`` runs in this process, for a debugger)."""
    option = config.option
    # A worker is started with numprocesses None and dist "no" too: it must not start more.
    worker = hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ
    if not worker and getattr(option, "numprocesses", 0) is None and option.dist == "no" \
            and not option.usepdb and not option.collectonly:
        option.numprocesses = WORKERS
        option.dist = "load"


# The longest tests (one to four minutes each on two busy cores), longest first: handed out
# before all others.
LONGEST = ("tests/runbooks/test_ansible_parity.py::", "tests/runbooks/test_interrupts.py::",
           "tests/runbooks/test_promote.py::test_sigkill_",
           "tests/runbooks/test_promote_approvals.py::test_the_plan_shows_and_binds",
           "tests/store/test_scale.py::", "tests/sandbox/test_reset_and_clock.py::",
           "tests/runbooks/test_promote.py::test_promoting_twice",
           "tests/runbooks/test_untrusted_inputs.py::test_no_secret_",
           "tests/runbooks/test_promote_approvals.py::", "tests/runbooks/test_hotfix.py::")


def _order(item: pytest.Item) -> int:
    for rank, prefix in enumerate(LONGEST):
        if item.nodeid.startswith(prefix):
            return rank
    sandboxed = {"sandbox", "in_shared_sandbox"} & set(getattr(item, "fixturenames", ()))
    return len(LONGEST) + (0 if sandboxed else 1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On xdist workers: the longest tests are handed out first, then the others that use a
    sandbox, and the quick ones fill the gaps at the end, so no long test starts last."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        items.sort(key=_order)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """cwd = a fresh folder whose ./.runbook and $HOME cannot be written to."""
    work = tmp_path / "work"
    work.mkdir()
    (work / ".runbook").write_text("tests must not write here\n")
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("RUNBOOK_USER", "tester")
    # A worker per run, ended with it: none outlives its test (tests/steps/test_ansible_kept.py
    # keeps them, as a person's runs do by default).
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", "0")
    for name in POINTERS:  # a test points at a sandbox or cluster only when it asks to
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(work)
    yield work


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def runbook_cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the CLI in this process and capture what it printed."""

    def invoke(*args: str) -> Result:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def write_runbook(isolated: Path):  # type: ignore[no-untyped-def]
    """Write a runbook YAML (dedented) into the test folder and return its path."""

    def write(text: str, name: str = "book") -> Path:
        path = isolated / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def runbook_process(*args: str, env: dict[str, str] | None = None,
                    **kwargs: object) -> subprocess.Popen[str]:
    """Start a real ``runbook`` process (``python -m engine``)."""
    return subprocess.Popen([sys.executable, "-m", "engine", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, **kwargs)  # type: ignore[call-overload]


HEADER = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: book}
"""


def _start_sandbox(where: Path) -> dict[str, str]:
    from engine import sandbox

    # Verification windows wait on the sandbox's clock: over as soon as sampled, or held.
    return sandbox.up(where, rollout_delay=0.3, operator="tester", clock=True)


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One sandbox for this test process (each pytest-xdist worker has its own): starting
    one takes seconds, putting it back as new (`sandbox.reset`) a fraction of that."""
    from engine import sandbox as sb

    where = tmp_path_factory.mktemp("shared") / "sandbox"
    info = _start_sandbox(where)
    yield info
    sb.down(where)


# Whether a test that may change the shared sandbox has used it since its last reset.
_CHANGED = {"since_reset": False}


def _point_at(info: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import sandbox as sb

    for key, value in sb.environment(info).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def sandbox(shared_sandbox: dict[str, str],
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A sandbox (moto + Kubernetes emulator + PostgreSQL) as new, for a test that changes
    it; the environment points the engine, Ansible and boto3 at it, exactly as
    `eval "$(runbook sandbox env)"` does."""
    from engine import sandbox as sb

    _CHANGED["since_reset"] = True
    sb.reset(shared_sandbox)
    _point_at(shared_sandbox, monkeypatch)
    return shared_sandbox


@pytest.fixture
def in_shared_sandbox(shared_sandbox: dict[str, str],
                      monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sandbox as new, for a test that must not change anything in it: it is reset only
    when a test that may change it used it last."""
    from engine import sandbox as sb

    if _CHANGED["since_reset"]:
        sb.reset(shared_sandbox)
        _CHANGED["since_reset"] = False
    _point_at(shared_sandbox, monkeypatch)
    return shared_sandbox


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server: the one .ci/run started (RUNBOOK_TEST_POSTGRES_DSN), or one
    started here with scripts/postgres.sh."""
    given = OUTER_ENV.get("RUNBOOK_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    import tempfile

    folder = tempfile.mkdtemp(prefix="runbook-pg-", dir="/tmp")
    script = str(REPO / "scripts" / "postgres.sh")
    dsn = subprocess.run([script, "start", folder], check=True, capture_output=True,
                         text=True).stdout.strip()
    yield dsn
    subprocess.run([script, "stop", folder], check=False)


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[dict[str, str]]:
    """A fresh database and its owner, whose password needs quoting in a URL."""
    import secrets as pysecrets

    import psycopg
    from psycopg import sql

    name = f"quikapp_{pysecrets.token_hex(4)}"
    password = f"p@ss:w/rd%{pysecrets.token_hex(4)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(name)))
    host_port = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    yield {"name": name, "user": name, "password": password, "host": host, "port": port,
           "admin_dsn": postgres_dsn}
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
