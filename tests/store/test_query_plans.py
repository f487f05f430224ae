"""Every read command finds what it shows by an index: the database's own plan of each query
they send (SQLite's ``EXPLAIN QUERY PLAN``, PostgreSQL's ``EXPLAIN`` with sequential scans
priced out, so that a plan still scanning has no index to use) reads no whole table of runs,
steps or journal records, on both backends."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from engine import api
from engine.store import EventRecord, HistoryRecord, LockRecord, StepRecord, open_store
from engine.store.sql_base import SqlBase
from tests.store.test_store import BACKENDS, a_run, store_location

BIG = ("runs", "steps", "journal")


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    return store_location(request.param, request, tmp_path)


Sent = list[tuple[str, tuple[Any, ...]]]


@pytest.fixture
def recorded(location: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    """A store with runs in it, and every statement the engine sends it from now on."""
    with open_store(location) as store:
        for i in range(30):
            run = a_run(f"r{i:02d}", started=f"2026-01-01T00:00:{i:02d}.000+00:00")
            store.create_run(run)
            store.save_step(StepRecord(run.id, "s1", "ok", 1, run.started_at, "",
                                       ended_at=run.started_at, result={"n": i}))
            store.add_event(EventRecord(run.id, run.started_at, "note", {"i": i}))
            store.add_history(HistoryRecord(run.started_at, run.id, "ann", "promotion",
                                            "staging", {"tag": f"v{i}"}))
        store.acquire_lock(LockRecord("qa", "r29", "ann", "2026-01-01T00:00:29.000+00:00"))
    sent: Sent = []
    backend = type(open_store(location, readonly=True))  # the class the commands open
    execute = backend._execute

    def recording(self: SqlBase, sql: str, params: Sequence[Any] = ()) -> Any:
        sent.append((sql, tuple(params)))
        return execute(self, sql, params)

    # Only listened to: each statement goes on to the database as it was.
    monkeypatch.setattr(backend, "_execute", recording)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    yield sent


def full_scans(location: str, sent: Sent) -> list[str]:
    """The queries among ``sent`` whose plan reads a whole big table, with that plan."""
    found = []
    with open_store(location, readonly=True) as store:
        for sql, params in sent:
            if not sql.lstrip().upper().startswith("SELECT") or not any(
                    re.search(rf"\b{table}\b", sql) for table in BIG):
                continue
            if location.startswith("postgresql://"):
                store._execute("SET enable_seqscan = off")  # type: ignore[attr-defined]
                plan = [r[0] for r in store._all(  # type: ignore[attr-defined]
                    "EXPLAIN " + sql, params)]
                scans = [line for line in plan if re.search(
                    rf"Seq Scan on ({'|'.join(BIG)})\b", line)]
            else:
                plan = [r[-1] for r in store._all(  # type: ignore[attr-defined]
                    "EXPLAIN QUERY PLAN " + sql, params)]
                # A scan in the order the query asks for, stopped by its LIMIT, reads that
                # many rows: not the whole table.
                bounded = " LIMIT " in sql.upper() and not any("TEMP B-TREE" in line
                                                              for line in plan)
                scans = [line for line in plan if re.fullmatch(
                    rf"SCAN ({'|'.join(BIG)})( USING (COVERING )?INDEX \w+)?", line)
                    and not bounded]
            if scans:
                found.append(f"{' '.join(sql.split())}: {'; '.join(plan)}")
    return found


READS = {
    "status": lambda: api.status(),
    "status RUN": lambda: api.status(run_id="r07"),
    "history --env": lambda: api.history(env="staging"),
    "history": lambda: api.history(),
    "lock list": lambda: api.locks(),
    "audit export --run": lambda: api.change_record(run_id="r07"),
}


@pytest.mark.parametrize("command", sorted(READS))
def test_a_read_command_reads_by_index(command: str, location: str, recorded):
    READS[command]()
    assert recorded, "the command sent no query"
    assert full_scans(location, recorded) == []


def test_the_board_without_the_cluster_reads_by_index(location: str, recorded):
    from engine.store import open_store as opened

    with opened(location, readonly=True) as store:  # what api.board reads of the store
        store.last_changes(("promotion", "rollback", "hotfix"))
        runs = store.board_runs()
        ids = [r.id for r in runs]
        store.steps_of(ids)
        store.approvals_of(ids)
        store.locks()
    assert full_scans(location, recorded) == []
