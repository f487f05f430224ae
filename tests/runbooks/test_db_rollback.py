"""db-rollback against a real PostgreSQL server and a real migration tool (alembic)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from engine.language.loader import PROJECT_ROOT
from tests.conftest import REPO, runbook_process
from tests.runbooks.killing import kill_during, state_db, step_status, wait_until

MIGRATIONS = REPO / "tests" / "fixtures" / "migrations"
ALEMBIC = [sys.executable, "-m", "alembic", "-c", "alembic.ini"]


def url(db: dict[str, str]) -> str:
    from urllib.parse import quote

    return (f"postgresql://{db['user']}:{quote(db['password'], safe='')}@{db['host']}:"
            f"{db['port']}/{db['name']}")


def version(db: dict[str, str]) -> str | None:
    with psycopg.connect(url(db)) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def order_columns(db: dict[str, str]) -> list[str]:
    with psycopg.connect(url(db)) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'orders' ORDER BY ordinal_position").fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def migrated(database, isolated, monkeypatch):
    """The qa database at the head migration, and an inventory that points at it."""
    subprocess.run([*ALEMBIC, "upgrade", "head"], cwd=MIGRATIONS, check=True,
                   env={**os.environ, "DATABASE_URL": url(database)})
    assert version(database) == "0003"
    inventory = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp.yaml").read_text())
    inventory["environments"]["qa"]["database"] = {
        "instance": "quikapp-qa", "host": database["host"], "port": int(database["port"]),
        "name": database["name"], "user": database["user"], "password_env": "QA_DB_PASSWORD",
        "migrations_dir": str(MIGRATIONS), "migrate_rollback": [*ALEMBIC, "downgrade", "-1"],
        "migrate_version": [*ALEMBIC, "current"]}
    inventory["people"]["tester"] = {"name": "The tests", "roles": ["sre"]}
    path = isolated / "db-inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(path))
    monkeypatch.setenv("QA_DB_PASSWORD", database["password"])
    return database


def leaks(secret: str, *texts: str) -> list[str]:
    found = [t[:80] for t in texts if secret in t]
    home = Path(os.environ["RUNBOOK_HOME"])
    for file in home.rglob("*"):
        if file.is_file() and secret.encode() in file.read_bytes():
            found.append(str(file))
    return found


def test_db_rollback_goes_back_one_migration(migrated, runbook_cli):
    result = runbook_cli("run", "db-rollback", "--env", "qa")
    assert result.code == 0, result.out
    assert version(migrated) == "0002"
    assert "total_cents" not in order_columns(migrated)
    assert "    0003 (head)" in result.out and "    0002" in result.out
    history = runbook_cli("history", "--kind", "db-rollback", "--output", "json").json()
    assert history[0]["data"] == {"before": "0003 (head)", "after": "0002"}
    assert leaks(migrated["password"], result.out, result.err) == []


def test_the_password_is_never_shown_nor_stored(migrated, runbook_cli):
    plan = runbook_cli("plan", "db-rollback", "--env", "qa", "--output", "json")
    assert plan.code == 0, plan.json()["message"]
    run = runbook_cli("run", "db-rollback", "--env", "qa", "--output", "json")
    from urllib.parse import quote

    for secret in (migrated["password"], quote(migrated["password"], safe="")):
        assert leaks(secret, plan.out, run.out) == []


def test_missing_password_is_invalid_input(migrated, runbook_cli, monkeypatch):
    monkeypatch.delenv("QA_DB_PASSWORD")
    result = runbook_cli("run", "db-rollback", "--env", "qa")
    assert result.code == 2
    assert "the environment variable QA_DB_PASSWORD is not set" in result.err
    assert version(migrated) == "0003"


def test_sigkill_mid_rollback_then_resume_goes_back_exactly_one(migrated, runbook_cli):
    run_id = kill_during("rollback", "run", "db-rollback", "--env", "qa")
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert version(migrated) == "0002"


def test_killed_after_the_migration_committed_it_is_not_redone(migrated, runbook_cli):
    # The downgrade has committed but its checkpoint is not written: hold the state file's
    # write lock so the engine blocks there, then kill it. Resume must not downgrade again.
    proc = runbook_process("run", "db-rollback", "--env", "qa")
    run_id = proc.stdout.readline().split()[1]
    wait_until(lambda: step_status(run_id, "rollback") == "running", proc)
    lock = sqlite3.connect(state_db(), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    wait_until(lambda: version(migrated) == "0002", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    lock.execute("ROLLBACK")
    lock.close()
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert "rollback skipped" in done.out
    assert version(migrated) == "0002"
