"""db-rollback in the sandbox: its PostgreSQL, its migrations, its inventory and variables."""

from __future__ import annotations

import signal
import sqlite3
import time

import psycopg

from engine.sandbox import database
from engine.store.owner import pid_alive
from tests.conftest import runbook_process
from tests.runbooks.killing import state_db, step_status, wait_until
from tests.test_proc import tagged


def connect(sandbox, env: str) -> psycopg.Connection:
    db = sandbox["databases"][env]
    return psycopg.connect(database.url(db["host"], db["port"], db["name"], db["user"],
                                        db["password"]))


def version(sandbox, env: str) -> str | None:
    with connect(sandbox, env) as conn:
        row = conn.execute("SELECT version FROM schema_migrations").fetchone()
    return row[0] if row else None


def order_columns(sandbox, env: str) -> list[str]:
    with connect(sandbox, env) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'orders'").fetchall()
    return [r[0] for r in rows]


def waiting_on_a_lock(sandbox, env: str) -> bool:
    with connect(sandbox, env) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                           "AND wait_event_type = 'Lock'",
                           (sandbox["databases"][env]["name"],)).fetchone()
    return bool(row and row[0])


def test_db_rollback_goes_back_one_migration_in_the_sandbox(sandbox, runbook_cli):
    assert version(sandbox, "qa") == "0003"
    result = runbook_cli("run", "db-rollback", "--env", "qa")
    assert result.code == 0, result.out + result.err
    assert version(sandbox, "qa") == "0002"
    assert "total_cents" not in order_columns(sandbox, "qa")
    assert version(sandbox, "uat1") == "0003"  # one environment's database only
    history = runbook_cli("history", "--kind", "db-rollback", "--output", "json").json()
    assert history[0]["data"] == {"before": "0003 order_total (head)", "after": "0002 orders"}
    assert sandbox["databases"]["qa"]["password"] not in result.out + result.err
    assert runbook_cli("lock", "list").out.strip() == "no environment is locked"


def test_killed_mid_rollback_the_resumed_run_goes_back_once(sandbox, runbook_cli):
    # The test holds the table the rollback alters: the rollback waits inside its
    # transaction, and is killed there.
    holder = connect(sandbox, "qa")
    holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    proc = runbook_process("run", "db-rollback", "--env", "qa")
    run_id = proc.stdout.readline().split()[1]
    wait_until(lambda: waiting_on_a_lock(sandbox, "qa"), proc)
    assert step_status(run_id, "rollback") == "running"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    # The migration tool ends with the engine (its guard kills it); only then is the table
    # let go, so the tool cannot go on to commit.
    deadline = time.monotonic() + 60
    while [p for p in tagged(run_id) if pid_alive(p)]:
        assert time.monotonic() < deadline, "the killed run's processes live on"
        time.sleep(0.01)
    holder.rollback()
    holder.close()
    assert version(sandbox, "qa") == "0003"
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out + done.err
    assert version(sandbox, "qa") == "0002"
    assert "total_cents" not in order_columns(sandbox, "qa")
    assert "orders" in [r[0] for r in connect(sandbox, "qa").execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]


def test_killed_after_the_rollback_committed_it_is_not_redone(sandbox, runbook_cli):
    # The rollback has committed but its checkpoint is not written yet: the state file's
    # write lock holds the engine there while it is killed.
    proc = runbook_process("run", "db-rollback", "--env", "qa")
    run_id = proc.stdout.readline().split()[1]
    wait_until(lambda: step_status(run_id, "rollback") == "running", proc)
    lock = sqlite3.connect(state_db(), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    wait_until(lambda: version(sandbox, "qa") == "0002", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    lock.execute("ROLLBACK")
    lock.close()
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out + done.err
    assert "rollback skipped" in done.out
    assert version(sandbox, "qa") == "0002"
    assert order_columns(sandbox, "qa") != []  # 0002's orders table is still there


def test_without_the_password_the_run_is_refused_and_keeps_no_lock(sandbox, runbook_cli,
                                                                   monkeypatch):
    monkeypatch.delenv("QUIKAPP_QA_DB_PASSWORD")
    result = runbook_cli("run", "db-rollback", "--env", "qa")
    assert result.code == 2
    assert result.err.strip().endswith(
        "at $.vars.connection.DATABASE_URL: the environment variable QUIKAPP_QA_DB_PASSWORD "
        "is not set")
    assert "{{" not in result.err and "postgresql://" not in result.err
    assert runbook_cli("lock", "list").out.strip() == "no environment is locked"
    assert runbook_cli("status").out.strip() == "no runs yet"
    assert version(sandbox, "qa") == "0003"
