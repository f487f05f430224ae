"""``audit verify`` goes on from where the last verification found the journal intact: the
records after that one, the runs they belong to, and that record still with its hash; the
journal rewritten before it changes that hash, and is found. ``--full`` reads everything."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.store import open_store
from engine.store.chain import record_hash
from tests.helpers import append_step, book

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    from tests.store.test_store import store_location

    location = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    return location


def runs(runbook_cli, write_runbook, count: int) -> None:  # type: ignore[no-untyped-def]
    path = write_runbook(book(append_step("a"), append_step("b")))
    for _ in range(count):
        assert runbook_cli("run", str(path)).code == 0


def sql(location: str, statement: str, params: tuple[object, ...] = ()) -> None:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as db:
            db.execute(statement.replace("?", "%s"), params)
        return
    db = sqlite3.connect(location)
    db.execute(statement, params)
    db.commit()
    db.close()


def head(location: str) -> int:
    with open_store(location, readonly=True) as store:
        found = store.journal_head()
    assert found is not None
    return found[0]


def test_a_verification_goes_on_from_the_last_one(state, runbook_cli, write_runbook):
    runs(runbook_cli, write_runbook, 2)
    first = runbook_cli("audit", "verify")
    assert first.code == 0 and "found intact before" not in first.out  # nothing was, yet
    checked = head(state)
    runs(runbook_cli, write_runbook, 1)
    second = runbook_cli("audit", "verify", "--output", "json").json()
    assert second["intact"] and second["verified_before"] == checked
    assert second["records"] == head(state)
    again = runbook_cli("audit", "verify")
    assert f"records 1-{head(state)} were found intact before" in again.out


def test_an_edit_after_the_remembered_record_is_found(state, runbook_cli, write_runbook):
    runs(runbook_cli, write_runbook, 1)
    assert runbook_cli("audit", "verify").code == 0
    remembered = head(state)
    runs(runbook_cli, write_runbook, 1)
    edited = remembered + 2
    sql(state, "UPDATE journal SET run_id = 'forged' WHERE seq = ?", (edited,))
    found = runbook_cli("audit", "verify")
    assert found.code == 1
    assert f"record {edited}: its content does not match its hash (edited)" in found.out


def test_a_journal_rewritten_before_the_remembered_record_is_found_by_its_hash(
        state, runbook_cli, write_runbook):
    runs(runbook_cli, write_runbook, 2)
    assert runbook_cli("audit", "verify").code == 0
    remembered = head(state)
    runs(runbook_cli, write_runbook, 1)
    # A forger edits record 2 and hashes every record after it again: each record is sound
    # and follows the one before, but the remembered one's hash is no longer what it was.
    with open_store(state, readonly=True) as store:
        records = list(store.scan_journal())
    prev = records[0].hash
    for rec in records[1:]:
        data = {**rec.data, "forged": True} if rec.seq == 2 else rec.data
        digest = record_hash(prev, rec.seq, rec.at, rec.run_id, rec.kind, data)
        sql(state, "UPDATE journal SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (json.dumps(data, sort_keys=True, default=str), prev, digest, rec.seq))
        prev = digest
    found = runbook_cli("audit", "verify")
    assert found.code == 1
    assert (f"record {remembered}: not the record audit verify found intact there"
            in found.out)


def test_full_reads_every_record(state, runbook_cli, write_runbook):
    runs(runbook_cli, write_runbook, 2)
    assert runbook_cli("audit", "verify").code == 0
    # An edit of an early record's content alone, hashed again by no one: the records
    # after the remembered one do not show it; every record read does.
    sql(state, "UPDATE journal SET run_id = 'forged' WHERE seq = 2")
    full = runbook_cli("audit", "verify", "--full")
    assert full.code == 1
    assert "record 2: its content does not match its hash (edited)" in full.out
