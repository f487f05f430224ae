"""The engine as someone installs it: the wheel ``uv build`` makes, installed into a fresh
virtual environment, validates and plans a runbook kept outside the repository, and prints
the schemas editors use, reading nothing from the source tree."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OUTER_ENV, REPO

RUNBOOK = """\
# yaml-language-server: $schema=https://example.invalid/runbook.schema.json
apiVersion: runbook/v1
kind: Runbook
metadata:
  name: greet
  description: "Say hello to an environment"
  inventory: team
params:
  env: {type: string, required: true, enum: [qa, live]}
steps:
  - id: hello
    command: {argv: [echo, "hello {{ params.env }}"]}
  - id: sure
    assert: {that: ["inventory.vars.owner == 'platform'"]}
"""
BROKEN = """\
# yaml-language-server: $schema=../schemas/runbook.schema.json
apiVersion: runbook/v1
kind: Runbook
metadata: {name: broken}
steps:
  - id: hello
    comand: {argv: [echo, hi]}
"""
INVENTORY = """\
# yaml-language-server: $schema=../schemas/inventory.schema.json
apiVersion: runbook/v1
kind: Inventory
metadata: {name: team}
vars: {owner: platform}
"""


def uv() -> str:
    found = shutil.which("uv", path=OUTER_ENV.get("PATH"))
    assert found, "uv is needed to build and install the wheel (python3 -m pip install uv)"
    return found


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this pytest session that all its pytest-xdist workers see."""
    base = tmp_path_factory.getbasetemp()
    # A worker's base is popen-gwN inside the session's own folder.
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``runbook`` script of a fresh virtual environment holding only the built wheel
    and the locked dependencies (from uv's cache: no network needed once ``uv sync`` ran).
    Built once for the session: the first worker to get here builds it while the others
    wait on the lock, then all use it."""
    where = shared_folder(tmp_path_factory) / "package"
    where.mkdir(exist_ok=True)
    with (where / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        script = where / "venv" / "bin" / "runbook"
        if not (where / "installed").exists():
            _install(where)
            (where / "installed").write_text("")
    return script


def _install(where: Path) -> None:
    env = {**OUTER_ENV, "VIRTUAL_ENV": "", "PYTHONPATH": ""}

    def sh(*argv: str | Path, cwd: Path = where) -> str:
        done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, text=True,
                              capture_output=True, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    shutil.rmtree(where / "dist", ignore_errors=True)
    shutil.rmtree(where / "venv", ignore_errors=True)
    sh(uv(), "build", "--wheel", "--out-dir", where / "dist", REPO, cwd=REPO)
    wheel = next((where / "dist").glob("runbook-*.whl"))
    venv = where / "venv"
    # The locked dependencies, not the project: the engine comes from the wheel alone. Linked
    # from uv's cache, not copied: a fresh environment all the same.
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env["UV_LINK_MODE"] = "hardlink"
    sh(uv(), "sync", "--offline", "--frozen", "--no-dev", "--no-install-project",
       "--python", sys.executable, "--project", REPO)
    sh(uv(), "pip", "install", "--offline", "--no-deps", "--python", venv / "bin" / "python",
       wheel)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A team's own folder, far from the repository, with a runbook and an inventory."""
    folder = tmp_path / "team"
    (folder / "runbooks").mkdir(parents=True)
    (folder / "inventories").mkdir()
    (folder / "runbooks" / "greet.yaml").write_text(RUNBOOK)
    (folder / "runbooks" / "broken.yaml").write_text(BROKEN)
    (folder / "inventories" / "team.yaml").write_text(INVENTORY)
    return folder


def run(runbook: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(runbook), *args], cwd=cwd, text=True, capture_output=True,
                          env=env, check=False, timeout=120)


def test_the_installed_engine_is_not_the_checkout(installed: Path, outside: Path) -> None:
    python = installed.with_name("python")
    done = subprocess.run([str(python), "-c", "import engine; print(engine.__file__)"],
                          cwd=outside, text=True, capture_output=True, check=True)
    assert Path(done.stdout.strip()).is_relative_to(installed.parent.parent)
    assert not Path(done.stdout.strip()).is_relative_to(REPO)


def test_validate_and_plan_outside_the_repository(installed: Path, outside: Path,
                                                  tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(installed, "validate", str(outside / "runbooks" / "greet.yaml"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "ok:" in done.stdout

    # Only the team's runbooks: an installed engine has none of the checkout's.
    listed = run(installed, "list", "--output", "json", cwd=outside)
    assert listed.returncode == 0, listed.stderr
    assert sorted(book["name"] for book in json.loads(listed.stdout)) == ["broken", "greet"]

    plan = run(installed, "plan", "greet", "--env", "qa", cwd=outside)
    assert plan.returncode == 0, plan.stderr
    assert "hello" in plan.stdout and "sure" in plan.stdout


def test_errors_name_the_line_below_the_schema_comment(installed: Path,
                                                       outside: Path) -> None:
    done = run(installed, "validate", "runbooks/broken.yaml", cwd=outside)
    assert done.returncode == 2
    # Line 6 as the file counts it, the schema comment being line 1: the step holding the
    # unknown key.
    assert "runbooks/broken.yaml:6: at $.steps[0]" in done.stderr, done.stderr
    assert "comand" in done.stderr


@pytest.mark.parametrize("kind", ["runbook", "fragment", "inventory"])
def test_schema_prints_the_shipped_schema(installed: Path, outside: Path, kind: str) -> None:
    done = run(installed, "schema", kind, cwd=outside)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (REPO / "schemas" / f"{kind}.schema.json").read_text()
    printed = json.loads(done.stdout)
    assert printed["$id"].endswith(f"/{kind}.schema.json")
    assert printed["title"] and printed["description"]


def test_schema_of_an_unknown_kind_names_the_known_ones(installed: Path,
                                                        outside: Path) -> None:
    done = run(installed, "schema", "playbook", cwd=outside)
    assert done.returncode == 2
    assert all(kind in done.stderr for kind in ("runbook", "fragment", "inventory"))


def test_the_sandbox_says_it_needs_a_checkout(installed: Path, outside: Path) -> None:
    done = run(installed, "sandbox", "up", "--dir", str(outside / "sandbox"), cwd=outside)
    assert done.returncode == 1
    assert "the sandbox runs from a checkout of runbook" in done.stderr
    assert not (outside / "sandbox").exists()


def test_a_production_install_carries_no_sandbox(installed: Path, outside: Path) -> None:
    # moto's server (and the Flask and Werkzeug it serves with) come only with the extra.
    python = installed.with_name("python")
    found = subprocess.run([str(python), "-c", "import moto"], cwd=outside, text=True,
                           capture_output=True, check=False)
    assert found.returncode != 0 and "No module named 'moto'" in found.stderr


def test_the_sandbox_says_how_to_get_its_extra(installed: Path, tmp_path: Path) -> None:
    # The checkout's engine with the production install's packages: a checkout without the
    # extra.
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(installed.with_name("python")), "-m", "engine", "sandbox", "up",
                           "--dir", str(tmp_path / "sandbox")], cwd=REPO, env=env, text=True,
                          capture_output=True, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "uv sync --extra sandbox" in done.stderr and "runbook[sandbox]" in done.stderr
    assert not (tmp_path / "sandbox").exists()


@pytest.mark.parametrize("shipped", sorted(
    [*(REPO / "runbooks").glob("*.yaml"), *(REPO / "runbooks" / "fragments").glob("*.yaml"),
     *(REPO / "inventories").glob("*.yaml")]), ids=lambda p: p.name)
def test_shipped_files_name_their_schema_for_editors(shipped: Path) -> None:
    first = shipped.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    schema_file = (shipped.parent / first.removeprefix(prefix)).resolve()
    kind = next(line.split(":", 1)[1].strip() for line in shipped.read_text().splitlines()
                if line.startswith("kind:"))
    assert schema_file.is_file()
    assert json.loads(schema_file.read_text())["title"].lower().startswith(
        {"Runbook": "runbook v", "Fragment": "runbook fragment", "Inventory": "inventory"}[kind])
