"""What an open checks, at a cost that does not grow with the store: a file as an engine
sealed it is not read whole; one changed by anything else (or left by an engine killed as it
wrote) is; the journal's end is hashed again and the sealed record found where it was, on
both backends. ``runbook store check`` reads everything."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from engine.errors import StoreDamaged
from engine.store import EventRecord, RunRecord, open_store
from engine.store.sqlite import SEAL
from tests.store.test_store import BACKENDS, a_run, store_location
from tests.test_hostile import damaged_store


def filled(location: str, runs: int = 3) -> None:
    with open_store(location) as store:
        for i in range(runs):
            store.create_run(a_run(f"r{i}"))
            store.add_event(EventRecord(f"r{i}", "2026-01-01T00:00:01Z", "note", {"n": i}))


def outside(location: str, sql: str) -> None:
    """A change made to the store's tables by something else than the engine."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as db:
            db.execute(sql)
        return
    db = sqlite3.connect(location)
    db.execute(sql)
    db.commit()
    db.close()


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_location(request.param, request, tmp_path)


def test_a_store_an_engine_closed_is_sealed_as_it_left_it(tmp_path: Path):
    path = tmp_path / "state.db"
    filled(str(path))
    seal = json.loads(Path(f"{path}{SEAL}").read_text())
    st = path.stat()
    assert seal["file"] == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
    with open_store(str(path), readonly=True) as store:
        assert seal["journal"] == list(store.journal_head() or ())


def test_a_page_damaged_behind_the_seals_back_is_found_by_store_check_not_by_an_open(
        tmp_path: Path, runbook_cli):
    # Damage that leaves the file looking as sealed (size and time put back) is what an open
    # does not read the whole file for; `runbook store check` reads every page.
    home = Path(os.environ["RUNBOOK_HOME"])
    path = damaged_store(home)
    sealed = json.loads(Path(f"{path}{SEAL}").read_text())["file"]
    os.utime(path, ns=(sealed[3], sealed[3]))
    assert runbook_cli("lock", "list").code == 0  # reads no page of the runs
    found = runbook_cli("store", "check")
    assert found.code == 2
    assert f"{path}: the state store is damaged" in found.err


def test_a_damaged_file_no_seal_vouches_for_is_checked_whole(runbook_cli):
    # Damaged with its size and time as sealed, but no seal beside it (never sealed, or
    # sealed by an engine that was killed before it wrote one): the open reads every page.
    home = Path(os.environ["RUNBOOK_HOME"])
    path = damaged_store(home)
    sealed = json.loads(Path(f"{path}{SEAL}").read_text())["file"]
    os.utime(path, ns=(sealed[3], sealed[3]))
    Path(f"{path}{SEAL}").unlink()
    before = path.read_bytes()
    found = runbook_cli("lock", "list")
    assert found.code == 2, found.out
    assert f"{path}: the state store is damaged" in found.err
    assert path.read_bytes() == before and not Path(f"{path}{SEAL}").exists()


def test_records_removed_from_the_journals_end_are_refused(tmp_path: Path):
    # (A server has no file beside it to seal: there the end left is still a chain.)
    location = str(tmp_path / "state.db")
    filled(location)
    with open_store(location) as store:
        head = store.journal_head()
    assert head is not None
    outside(location, f"DELETE FROM journal WHERE seq >= {head[0] - 1}")
    with pytest.raises(StoreDamaged, match=rf"ends at record {head[0] - 2}, before record "
                                           rf"{head[0]} an engine wrote \(records removed\)"):
        open_store(location)
    with pytest.raises(StoreDamaged, match="records removed"):
        open_store(location, readonly=True)


def test_a_record_at_the_journals_end_edited_is_refused_before_any_write(location: str):
    filled(location)
    with open_store(location) as store:
        head = store.journal_head()
    assert head is not None
    outside(location, f"UPDATE journal SET run_id = 'forged' WHERE seq = {head[0]}")
    with pytest.raises(StoreDamaged, match=f"journal record {head[0]} does not match its hash"):
        open_store(location)
    outside(location, "UPDATE runs SET status = 'done'")  # what a write could have done
    with pytest.raises(StoreDamaged):
        open_store(location, readonly=True)


def test_a_store_restored_from_a_backup_in_place_says_how_to_accept_it(tmp_path: Path):
    path = tmp_path / "state.db"
    filled(str(path), runs=2)
    backup = path.read_bytes()
    with open_store(str(path)) as store:
        store.create_run(RunRecord(**{**a_run("later").__dict__}))
    path.write_bytes(backup)  # the same file, its older content
    Path(f"{path}-wal").unlink(missing_ok=True)
    with pytest.raises(StoreDamaged, match=f"remove {path}{SEAL}"):
        open_store(str(path))
    Path(f"{path}{SEAL}").unlink()
    with open_store(str(path)) as store:
        assert store.get_run("later") is None and store.get_run("r1") is not None
