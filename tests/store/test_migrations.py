"""A state store made by an older engine keeps its runs, approvals, history and journal when
a newer engine migrates it; the journal's chain verifies across the migration; a store newer
than the engine is refused untouched; two engines or a killed one never half-migrate it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.store import open_store
from engine.store.chain import GENESIS
from engine.store.migrations import MIGRATIONS, SIGNATURE_COLUMNS, SQLITE, STORE_VERSION
from tests.conftest import runbook_process
from tests.store.test_readonly import auditor, record_two_runs  # noqa: F401 (auditor: a fixture)
from tests.store.test_store import BACKENDS, store_location

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stores"
TABLES = ("runs", "steps", "approvals", "plans", "history", "locks", "journal",
          "plan_approval_uses")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> str:
    where = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", where)
    return where


@contextlib.contextmanager
def raw(location: str) -> Iterator[Callable[..., list[Any]]]:
    """The database itself, below the engine: run SQL and get the rows."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            yield lambda sql, *params: (list(cur.fetchall()) if (cur := conn.execute(
                sql.replace("?", "%s"), params)).description else [])
        return
    conn = sqlite3.connect(location, isolation_level=None)
    try:
        yield lambda sql, *params: list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def as_version_1(location: str) -> None:
    """Turn a store into what version 1 (the tables before migrations existed) left: the
    records stay, the version table, version 2's indexes, version 3's signature columns and
    version 4's indexes and tables, version 5's signatures and version 6's keyrings go, and
    each journal row holds the hash it follows (as every one did before version 6)."""
    with raw(location) as sql:
        sql("UPDATE journal SET prev_hash = COALESCE((SELECT p.hash FROM journal p "
            "WHERE p.seq = journal.seq - 1), ?) WHERE prev_hash = ''", GENESIS)
        sql("DROP TABLE store_version")
        sql("DROP TABLE keyrings")
        sql("DROP TABLE signatures")
        sql("ALTER TABLE approvals DROP COLUMN signed_sha256")
        sql("DROP TABLE newest_runs")
        sql("DROP TABLE audit_positions")
        sql("DROP INDEX runs_status")
        sql("DROP INDEX runs_started_id")
        sql("CREATE INDEX runs_started ON runs (started_at)")
        for column in SIGNATURE_COLUMNS:
            sql(f"ALTER TABLE approvals DROP COLUMN {column}")
        sql("DROP INDEX history_env")
        sql("DROP INDEX journal_run_seq")
        sql("CREATE INDEX journal_run ON journal (run_id)")
    if not location.startswith("postgresql://"):
        # The same tables and indexes, statement for statement, as version 1's DDL makes.
        fresh = sqlite3.connect(":memory:")
        for statement in MIGRATIONS[0](SQLITE):
            fresh.execute(statement)
        with raw(location) as sql:
            assert sql(SCHEMA) == list(fresh.execute(SCHEMA).fetchall())


SCHEMA = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"


def version(location: str) -> int:
    with open_store(location, readonly=True) as store:
        return store.version()


def contents(location: str) -> dict[str, list[Any]]:
    """Every row of every table, as the database holds it."""
    with raw(location) as sql:
        return {table: sorted(map(tuple, sql(f"SELECT * FROM {table}")), key=repr)
                for table in TABLES}


def journal(location: str) -> list[tuple[Any, ...]]:
    with raw(location) as sql:
        return [tuple(r) for r in sql("SELECT seq, at, run_id, kind, data, prev_hash, hash "
                                      "FROM journal ORDER BY seq")]


def test_a_version_1_store_is_migrated_keeping_every_record(location, runbook_cli, isolated):
    done_id, waiting_id = record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    assert version(location) == 1
    before = contents(location)
    chain = journal(location)

    # Reading needs no migration: version 1's tables hold all the reads ask for.
    status = runbook_cli("status", done_id, "--output", "json")
    assert status.code == 0, status.err
    assert [a["by"] for a in status.json()["approvals"]] == ["alice"]
    assert version(location) == 1

    migrated = runbook_cli("store", "migrate")
    assert migrated.code == 0, migrated.err
    assert migrated.out == f"state store migrated from version 1 to {STORE_VERSION}\n"
    assert version(location) == STORE_VERSION

    after = contents(location)
    # Version 3 gave the approvals their signature columns, version 5 the hash of the
    # signature kept once: empty for those given before.
    width = len(before["approvals"][0])
    assert {row[width:] for row in after["approvals"]} == {("",) * (len(SIGNATURE_COLUMNS) + 1)}
    after["approvals"] = sorted((row[:width] for row in after["approvals"]), key=repr)
    assert {t: rows for t, rows in after.items() if t != "journal"} == \
        {t: rows for t, rows in before.items() if t != "journal"}
    # Every record as it was, then one saying who migrated the store, from which version.
    new_chain = journal(location)
    assert new_chain[:len(chain)] == chain
    [(seq, _, run_id, kind, data, prev_hash, _)] = new_chain[len(chain):]
    # It follows the last record's hash, which that row holds (kept once from version 6).
    assert (seq, run_id, kind, prev_hash) == (len(chain) + 1, "", "store-migrate", "")
    with open_store(location, readonly=True) as store:
        assert store.journal()[-1].prev_hash == chain[-1][6]
    assert {k: json.loads(data)[k] for k in ("from", "to")} == {"from": 1, "to": STORE_VERSION}

    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0, verified.out
    assert verified.out.startswith(f"journal intact: {len(chain) + 1} records")
    assert runbook_cli("store", "migrate").out == \
        f"state store at version {STORE_VERSION}: nothing to migrate\n"

    # The run that waited across the migration goes on to the end.
    assert runbook_cli("approve", waiting_id, "--step", "ok", "--by", "alice").code == 0
    resumed = runbook_cli("resume", waiting_id)
    assert resumed.code == 0, resumed.err
    history = runbook_cli("history", "--env", "uat1", "--output", "json")
    assert [(h["env"], h["run_id"]) for h in history.json()] == [("uat1", waiting_id)]
    assert runbook_cli("audit", "verify", "--full").code == 0


def test_the_first_write_of_a_newer_engine_migrates(location, runbook_cli, isolated):
    _, waiting_id = record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    chain = journal(location)
    assert runbook_cli("approve", waiting_id, "--step", "ok", "--by", "bob").code == 0
    assert version(location) == STORE_VERSION
    kinds = [record[3] for record in journal(location)[len(chain):]]
    assert kinds == ["store-migrate", "approval"]
    assert runbook_cli("audit", "verify", "--full").code == 0


def test_a_store_newer_than_the_engine_is_refused_untouched(location, runbook_cli, isolated):
    record_two_runs(runbook_cli, isolated)
    with raw(location) as sql:
        sql("INSERT INTO store_version (version, applied_at) VALUES (?, ?)",
            STORE_VERSION + 1, "2030-01-01T00:00:00.000+00:00")
        if not location.startswith("postgresql://"):
            sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = contents(location)
    file_bytes = _file_digest(location)

    for command in (("status",), ("audit", "verify", "--full"), ("store", "migrate"),
                    ("run", str(isolated / "book.yaml"), "--env", "uat2")):
        refused = runbook_cli(*command)
        assert refused.code == 2, (command, refused.out, refused.err)
        assert (f"the state store is at version {STORE_VERSION + 1}, newer than this engine "
                f"(version {STORE_VERSION})") in refused.err
    assert contents(location) == before
    assert _file_digest(location) == file_bytes


def _file_digest(location: str) -> str:
    if location.startswith("postgresql://"):
        return ""
    return hashlib.sha256(Path(location).read_bytes()).hexdigest()


def test_two_engines_migrating_at_once_migrate_once(location, runbook_cli, isolated):
    record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    chain = journal(location)
    procs = [runbook_process("store", "migrate") for _ in range(2)]
    outs = sorted(proc.communicate(timeout=120)[0] for proc in procs)
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outs == [f"state store at version {STORE_VERSION}: nothing to migrate\n",
                    f"state store migrated from version 1 to {STORE_VERSION}\n"]
    assert [r[3] for r in journal(location)[len(chain):]] == ["store-migrate"]
    assert runbook_cli("audit", "verify", "--full").code == 0


def test_engines_starting_at_once_on_a_new_store_create_it_once(location):
    for _ in range(3):  # each round a new store, four engines racing to make it
        if location.startswith("postgresql://"):
            with raw(location) as sql:
                sql("DROP SCHEMA public CASCADE")
                sql("CREATE SCHEMA public")
        else:
            for leftover in Path(location).parent.glob(Path(location).name + "*"):
                leftover.unlink()
        procs = [runbook_process("store", "migrate") for _ in range(4)]
        outs = [proc.communicate(timeout=120) for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 4, outs
        assert sorted(out for out, _ in outs) == [
            *[f"state store at version {STORE_VERSION}: nothing to migrate\n"] * 3,
            f"state store created at version {STORE_VERSION}\n"]
        with raw(location) as sql:
            assert [r[0] for r in sql("SELECT version FROM store_version ORDER BY version")] \
                == list(range(1, STORE_VERSION + 1))
            assert sql("SELECT count(*) FROM journal") == [(0,)]


# -- killed in the middle --------------------------------------------------------------------

def wait_for(what: str, found: Callable[[], Any], proc: subprocess.Popen[str] | None = None,
             limit: float = 60.0) -> Any:
    """Poll until ``found`` returns something; the limit only bounds a failing test."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"ended before {what}: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail(f"never saw {what}")


def check_still_version_1_then_migrate(location: str, before: dict[str, list[Any]],
                                       runbook_cli) -> None:  # type: ignore[no-untyped-def]
    assert version(location) == 1
    assert contents(location) == before  # not one row of the half-done migration stayed
    with raw(location) as sql:
        if location.startswith("postgresql://"):
            assert sql("SELECT to_regclass('store_version'), to_regclass('history_env')") == \
                [(None, None)]
        else:
            assert sql("SELECT name FROM sqlite_master WHERE name IN "
                       "('store_version', 'history_env')") == []
    migrated = runbook_cli("store", "migrate")
    assert migrated.out == f"state store migrated from version 1 to {STORE_VERSION}\n"
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0, verified.out
    assert verified.out.startswith(f"journal intact: {len(before['journal']) + 1} records")


def test_postgres_migration_killed_midway_is_rolled_back(request, runbook_cli, isolated,
                                                         monkeypatch):
    location = store_location("postgres", request, isolated)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    before = contents(location)
    # A reader of the journal holds the migration at its journal index, after it changed
    # other tables: the engine is killed there, inside its transaction.
    with psycopg.connect(location) as holder, raw(location) as sql:
        holder.execute("LOCK TABLE journal IN ROW EXCLUSIVE MODE")
        proc = runbook_process("store", "migrate")
        backend = wait_for("the migration waiting at the journal", lambda: sql(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND position('journal_run_seq' in query) > 0"), proc)[0][0]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        holder.rollback()
        wait_for("the killed engine's session to end", lambda: not sql(
            "SELECT pid FROM pg_stat_activity WHERE pid = ?", backend))
    check_still_version_1_then_migrate(location, before, runbook_cli)


# A real engine opening the store, paused (not changed) when SQLite begins the statement
# that makes version 2's journal index: by then the migration has written other tables.
PAUSED_MIGRATION = """
import sqlite3, sys
from engine.store import open_store
from engine.store.chain import GENESIS

connect = sqlite3.connect

def traced(*args, **kwargs):
    db = connect(*args, **kwargs)
    def pause(statement):
        if "journal_run_seq" in statement:
            print("migrating", flush=True)
            sys.stdin.readline()
    db.set_trace_callback(pause)
    return db

sqlite3.connect = traced
open_store(sys.argv[1])
print("finished", flush=True)
"""


def test_sqlite_migration_killed_midway_is_rolled_back(runbook_cli, isolated, monkeypatch,
                                                       tmp_path):
    location = str(tmp_path / "state.db")
    monkeypatch.setenv("RUNBOOK_STATE", location)
    record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    before = contents(location)
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_MIGRATION, location], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "migrating\n"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    check_still_version_1_then_migrate(location, before, runbook_cli)


def test_one_runs_journal_is_read_from_an_index(tmp_path, runbook_cli, isolated, monkeypatch):
    location = str(tmp_path / "state.db")
    monkeypatch.setenv("RUNBOOK_STATE", location)
    done_id, _ = record_two_runs(runbook_cli, isolated)
    with open_store(location, readonly=True) as store:
        asked: list[str] = []
        store._db.set_trace_callback(asked.append)  # type: ignore[attr-defined]
        assert {r.run_id for r in store.journal(done_id)} == {done_id}
        store.history(env="qa")
        store._db.set_trace_callback(None)  # type: ignore[attr-defined]
        plans = [" ".join(str(row[-1]) for row in store._db.execute(  # type: ignore[attr-defined]
            "EXPLAIN QUERY PLAN " + query, ["x"] * query.count("?")).fetchall())
            for query in (q.replace(f"'{done_id}'", "?").replace("'qa'", "?")
                          .replace("LIMIT 50", "LIMIT ?") for q in asked)
            if query.startswith("SELECT")]
    assert plans and all("USING INDEX" in plan and "TEMP B-TREE" not in plan
                         for plan in plans), plans


def test_a_reader_granted_before_a_migration_is_told_what_to_grant(
        request, runbook_cli, isolated, monkeypatch):
    reader = request.getfixturevalue("auditor")
    owner = store_location("postgres", request, isolated)
    monkeypatch.setenv("RUNBOOK_STATE", owner)
    done_id, _ = record_two_runs(runbook_cli, isolated)
    as_version_1(owner)
    reader.grant()  # SELECT on version 1's tables
    assert runbook_cli("store", "migrate").code == 0

    monkeypatch.setenv("RUNBOOK_STATE", reader.dsn)
    refused = runbook_cli("status", done_id)
    assert refused.code == 1
    assert "this role cannot read the state store's version (table store_version)" in \
        refused.err
    reader.grant()  # as the message says
    assert runbook_cli("status", done_id).code == 0


def test_a_migrated_store_knows_the_newest_run_of_each_lock(location, runbook_cli, isolated):
    done_id, waiting_id = record_two_runs(runbook_cli, isolated)
    as_version_1(location)
    with open_store(location, readonly=True) as store:  # read as version 1 stores it
        before = sorted(r.id for r in store.board_runs())
    assert before == sorted([done_id, waiting_id])
    assert runbook_cli("store", "migrate").code == 0
    with open_store(location, readonly=True) as store:
        assert sorted(r.id for r in store.board_runs()) == before
    later = runbook_cli("run", str(isolated / "book.yaml"))  # into qa again: newer there
    with open_store(location, readonly=True) as store:
        newest = sorted(r.id for r in store.board_runs())
    assert newest == sorted([later.out.split()[1], waiting_id])
    assert runbook_cli("audit", "verify", "--full").code == 0


def fixture_store(name: str, made_at: int, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of a store an earlier release made (tests/fixtures/stores), at version
    ``made_at``, as the state store."""
    location = tmp_path / "state.db"
    shutil.copy(FIXTURES / name, location)
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    assert version(str(location)) == made_at
    return location


def migrated_and_intact(runbook_cli: Any, made_at: int, records: int) -> None:
    migrated = runbook_cli("store", "migrate")
    assert migrated.out == f"state store migrated from version {made_at} to {STORE_VERSION}\n"
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0 and verified.out.startswith(f"journal intact: {records} records"), \
        verified.out


def signature_edit_caught(location: Path, runbook_cli: Any, edit: str) -> None:
    """After ``edit`` (SQL), ``audit verify --full`` reports a signature that is not the one
    its journal record holds."""
    with raw(str(location)) as sql:
        sql(edit)
    for leftover in location.parent.glob("state.db-*"):
        leftover.unlink()
    edited = runbook_cli("audit", "verify", "--full")
    assert edited.code == 1 and "its signature is not the one its journal record holds" \
        in edited.out, edited.out


def test_a_store_of_the_previous_release_with_signed_approvals_migrates_and_verifies(
        tmp_path, monkeypatch, runbook_cli):
    """tests/fixtures/stores/v4-signed-promotion.db: a sandbox promotion recorded by the
    release before signatures were kept once (version 4), its checklist attested by alice
    and bob with signed approvals, each journal record holding the signature's text."""
    location = fixture_store("v4-signed-promotion.db", 4, tmp_path, monkeypatch)
    migrated_and_intact(runbook_cli, 4, 26)
    [run] = runbook_cli("status", "--output", "json").json()
    approvals = runbook_cli("status", run["id"], "--output", "json").json()["approvals"]
    assert len(approvals) == 6 and all(
        a["signature"].startswith("-----BEGIN SSH SIGNATURE-----") for a in approvals)
    # The old rows keep their own signatures, and an edit of one is still caught.
    signature_edit_caught(location, runbook_cli,
                          "UPDATE approvals SET signature = (SELECT signature FROM approvals "
                          "WHERE by_name = 'alice' LIMIT 1) WHERE by_name = 'bob'")


def test_a_store_of_the_previous_release_migrates_to_keys_kept_once_and_verifies(
        tmp_path, monkeypatch, runbook_cli):
    """tests/fixtures/stores/v5-signed-promotion.db: a sandbox promotion recorded by the
    release before keys and hashes were kept once (version 5): its run-start record holds
    every person's keys, each journal row the hash it follows, each step record its values."""
    location = fixture_store("v5-signed-promotion.db", 5, tmp_path, monkeypatch)
    with raw(str(location)) as sql:
        [(start,)] = sql("SELECT data FROM journal WHERE kind = 'run-start'")
        assert sql("SELECT count(*) FROM journal WHERE prev_hash = ''") == [(0,)]
    assert "alice" in json.loads(start)["keys"]
    migrated_and_intact(runbook_cli, 5, 26)
    # The migration's record follows the old chain through the row before it.
    with raw(str(location)) as sql:
        assert sql("SELECT prev_hash FROM journal ORDER BY seq DESC LIMIT 1") == [("",)]
    # bob's signature, kept once in the signatures table, its payload edited: caught against
    # the old journal record's hash, with the keys its run-start holds.
    signature_edit_caught(location, runbook_cli,
                          "UPDATE signatures SET payload = replace(payload, 'CHG', 'CHX') "
                          "WHERE sha256 = (SELECT signed_sha256 FROM approvals WHERE "
                          "by_name = 'bob' LIMIT 1)")
