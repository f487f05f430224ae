"""An auditor reads the state store with read access alone: a read-only SQLite folder as
another user, a PostgreSQL role granted only SELECT. The read commands work; nothing is
created, and writing is really refused (so the access is what the test says it is)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from engine import cli
from engine.store import RunRecord, open_store
from tests.conftest import Result

BOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: book, lock: "{{ params.env }}"}
params:
  env: {type: string, default: qa}
steps:
  - id: ok
    approval: {prompt: go}
  - id: note
    record: {kind: promotion, env: "{{ params.env }}", data: {image: "api:1.4.2"}}
"""

Reader = Callable[..., Result]


@pytest.fixture
def public_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temporary folders are private)."""
    folder = Path(tempfile.mkdtemp(prefix="runbook-ro-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def record_two_runs(runbook_cli, folder: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """One run done (it promoted qa), one waiting with the lock on uat1."""
    (folder / "book.yaml").write_text(BOOK)
    path = str(folder / "book.yaml")
    done = runbook_cli("run", path)
    assert done.code == 3, done.err
    done_id = done.out.split()[1]
    assert runbook_cli("approve", done_id, "--step", "ok", "--by", "alice").code == 0
    assert runbook_cli("resume", done_id).code == 0
    waiting = runbook_cli("run", path, "--env", "uat1")
    assert waiting.code == 3, waiting.err
    return done_id, waiting.out.split()[1]


def check_reads(read: Reader, done_id: str, waiting_id: str) -> None:
    """Every read command an auditor needs, as the auditor sees them."""
    listed = read("status", "--output", "json")
    assert listed.code == 0, listed.err
    assert {(r["id"], r["status"]) for r in listed.json()} == {(done_id, "done"),
                                                               (waiting_id, "waiting")}
    detail = read("status", done_id, "--output", "json")
    assert detail.code == 0, detail.err
    assert [a["by"] for a in detail.json()["approvals"]] == ["alice"]
    history = read("history", "--output", "json")
    assert history.code == 0, history.err
    assert [(h["kind"], h["env"], h["run_id"]) for h in history.json()] == [
        ("promotion", "qa", done_id)]
    locks = read("lock", "list", "--output", "json")
    assert locks.code == 0, locks.err
    assert [(lock["env"], lock["run_id"]) for lock in locks.json()] == [("uat1", waiting_id)]
    verified = read("audit", "verify", "--full")
    assert verified.code == 0, verified.err
    assert verified.out.startswith("journal intact: ")
    exported = read("audit", "export", "--run", done_id)
    assert exported.code == 0, exported.err
    assert exported.out.startswith(f"# Change record: run `{done_id}`")
    assert "| step `ok` | — | alice |" in exported.out


# -- SQLite: a read-only folder, read by another user --------------------------------------

def other_user() -> tuple[int, int] | None:
    """Who reads: ``nobody`` when the tests run as root (root ignores file permissions),
    else this user, whom the permissions already bind."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to read as: "
                    "file permissions cannot be tested as root")
    return entry.pw_uid, entry.pw_gid


def as_user(who: tuple[int, int] | None, cwd: Path) -> Reader:
    """The CLI run in a forked process with the reader's uid (the interpreter's own files
    may be private to root, so the process forks from one that has its modules loaded)."""

    def read(*args: str) -> Result:
        out_fd, in_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the reader
            os.close(out_fd)
            try:
                os.chdir(cwd)
                if who is not None:
                    os.setgroups([])
                    os.setgid(who[1])
                    os.setuid(who[0])
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli.main(list(args))
                report = [code, out.getvalue(), err.getvalue()]
            except BaseException as exc:  # reported to the test, not lost in the child
                report = [99, "", f"{type(exc).__name__}: {exc}"]
            with os.fdopen(in_fd, "w") as pipe:
                pipe.write(json.dumps(report))
            os._exit(0)
        os.close(in_fd)
        with os.fdopen(out_fd) as pipe:
            code, out, err = json.loads(pipe.read())
        os.waitpid(pid, 0)
        return Result(code, out, err)

    return read


READS = (("status",), ("history",), ("lock", "list"), ("audit", "verify", "--full"))


def warm_up(runbook_cli, location: Path, done_id: str) -> None:  # type: ignore[no-untyped-def]
    """Load every module the read commands use, on a copy, before dropping privileges."""
    copy = Path(tempfile.mkdtemp(dir=location.parent.parent)) / "state.db"
    shutil.copy(location, copy)
    os.environ["RUNBOOK_STATE"] = str(copy)
    try:
        for args in (*READS, ("status", done_id), ("audit", "export", "--run", done_id)):
            assert runbook_cli(*args).code == 0
    finally:
        os.environ["RUNBOOK_STATE"] = str(location)
        shutil.rmtree(copy.parent)


def make_readonly(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(0o555)


def test_sqlite_read_commands_in_a_read_only_folder(public_folder, runbook_cli, monkeypatch):
    who = other_user()
    location = public_folder / "state" / "state.db"
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    done_id, waiting_id = record_two_runs(runbook_cli, public_folder)
    # In WAL mode, the log folded into the file as the last engine closed it, and sealed.
    assert sorted(p.name for p in location.parent.iterdir()) == ["state.db", "state.db-seal"]
    warm_up(runbook_cli, location, done_id)
    make_readonly(location.parent)
    read = as_user(who, public_folder)

    check_reads(read, done_id, waiting_id)
    assert sorted(p.name for p in location.parent.iterdir()) == ["state.db", "state.db-seal"]
    # The reader really cannot write: a command that records is refused.
    aborted = read("abort", waiting_id)
    assert aborted.code != 0 and "readonly database" in aborted.err
    assert read("status", waiting_id, "--output", "json").json()["run"]["status"] == "waiting"


def test_sqlite_reads_what_a_live_writer_has_in_its_wal(public_folder, runbook_cli,
                                                        monkeypatch):
    who = other_user()
    location = public_folder / "state" / "state.db"
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    done_id, waiting_id = record_two_runs(runbook_cli, public_folder)
    warm_up(runbook_cli, location, done_id)
    writer = open_store(str(location))  # a writer that is still at work
    try:
        writer.create_run(RunRecord(
            id="later", runbook="book", path=str(public_folder / "book.yaml"),
            runbook_sha="a" * 64, inventory=None, inventory_sha="b" * 64, params={},
            user="carol", started_at="2099-01-01T00:00:00.000+00:00", plan_hash="c" * 64))
        assert (location.parent / "state.db-wal").stat().st_size > 0
        make_readonly(location.parent)
        listed = as_user(who, public_folder)("status", "--output", "json")
        assert listed.code == 0, listed.err
        ids = [r["id"] for r in listed.json()]
        assert ids[0] == "later" and set(ids) == {"later", done_id, waiting_id}
    finally:
        location.parent.chmod(0o755)
        writer.close()


def test_reading_a_missing_sqlite_store_creates_nothing(tmp_path, runbook_cli, monkeypatch):
    location = tmp_path / "nowhere" / "state.db"
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    assert runbook_cli("status").out.strip() == "no runs yet"
    assert runbook_cli("history").out.strip() == "no history yet"
    assert runbook_cli("lock", "list").out.strip() == "no environment is locked"
    verified = runbook_cli("audit", "verify", "--full")
    assert (verified.code, verified.out.strip()) == (0, "journal intact: 0 records, head -")
    missing = runbook_cli("status", "20260101-000000-abcdef")
    assert missing.code == 2 and "no run with id" in missing.err
    assert not location.parent.exists()


def test_an_unreadable_sqlite_store_is_one_clear_error(public_folder, runbook_cli,
                                                       monkeypatch):
    who = other_user()
    location = public_folder / "state" / "state.db"
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    done_id, _ = record_two_runs(runbook_cli, public_folder)
    warm_up(runbook_cli, location, done_id)
    location.chmod(0o600)
    location.parent.chmod(0o555)
    result = as_user(who, public_folder)("status")
    assert result.code == 1
    assert result.err.startswith(f"runbook: error: cannot read the state store {location}: ")


def test_sqlite_writers_still_create_their_store(tmp_path, runbook_cli, write_runbook,
                                                 monkeypatch):
    location = tmp_path / "new" / "state.db"
    monkeypatch.setenv("RUNBOOK_STATE", str(location))
    path = write_runbook(BOOK)
    assert runbook_cli("run", str(path)).code == 3
    with sqlite3.connect(location) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- PostgreSQL: a role granted CONNECT, USAGE and SELECT ----------------------------------

def dsn_for(db: dict[str, str], user: str, password: str) -> str:
    return (f"postgresql://{user}:{quote(password, safe='')}@{db['host']}:{db['port']}/"
            f"{db['name']}")


@dataclass
class Auditor:
    dsn: str
    grant: Callable[[], None]


@pytest.fixture
def auditor(database: dict[str, str]) -> Iterator[Auditor]:
    """A role that may only read; ``grant()`` gives it CONNECT, USAGE and SELECT on the
    tables there are, once a normal writer has made them."""
    name = f"auditor_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    admin = database["admin_dsn"].rsplit("/", 1)[0] + "/" + database["name"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))

    def grant() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            for statement in ("GRANT CONNECT ON DATABASE {db} TO {role}",
                              "GRANT USAGE ON SCHEMA public TO {role}",
                              "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"):
                conn.execute(sql.SQL(statement).format(db=sql.Identifier(database["name"]),
                                                       role=sql.Identifier(name)))

    yield Auditor(dsn_for(database, name, password), grant)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_postgres_read_commands_with_a_select_only_role(database, auditor, runbook_cli,
                                                        public_folder, monkeypatch):
    writer = dsn_for(database, database["user"], database["password"])
    monkeypatch.setenv("RUNBOOK_STATE", writer)
    done_id, waiting_id = record_two_runs(runbook_cli, public_folder)
    auditor.grant()
    monkeypatch.setenv("RUNBOOK_STATE", auditor.dsn)

    check_reads(runbook_cli, done_id, waiting_id)
    # The role really cannot write: a command that records is refused by the server.
    aborted = runbook_cli("abort", waiting_id)
    assert aborted.code != 0 and "permission denied" in aborted.err, aborted.err
    assert runbook_cli("status", waiting_id, "--output", "json").json()["run"]["status"] \
        == "waiting"


def test_reading_a_postgres_store_without_tables_creates_none(database, runbook_cli,
                                                               monkeypatch):
    owner = dsn_for(database, database["user"], database["password"])
    monkeypatch.setenv("RUNBOOK_STATE", owner)
    result = runbook_cli("status")
    assert result.code == 1
    assert "the PostgreSQL state store has no runbook tables" in result.err
    with psycopg.connect(owner) as conn:
        assert conn.execute("SELECT to_regclass('runs')").fetchone() == (None,)
