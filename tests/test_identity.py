"""Names people claim: the starter and every --by are people of the inventory, exactly as
listed; control characters are refused where a name enters and escaped where anything a
person typed is printed; the journal says which OS user on which host made each record."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from engine.store import RunRecord, open_store
from engine.system.identity import login_name

PEOPLE = {"alice": {"roles": ["cab"]}, "bob": {"roles": ["cab"]}, "tester": {"roles": []}}


def inventory(folder: Path, **extra: object) -> Path:
    path = folder / "people.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "runbook/v1", "kind": "Inventory",
                                    "metadata": {"name": "people"}, "people": PEOPLE,
                                    **extra}))
    return path


@pytest.fixture
def book(isolated: Path, write_runbook) -> Path:
    return write_runbook(f"""\
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: book, inventory: {inventory(isolated)}, lock: live}}
        steps:
          - id: sign-off
            approval: {{prompt: "go"}}
          - id: done
            command: {{argv: [python3, -c, "print('deployed')"]}}
        """)


def started(runbook_cli, book: Path) -> str:
    first = runbook_cli("run", str(book))
    assert first.code == 3, first.out + first.err
    return first.out.split()[1]


def nothing_recorded(runbook_cli) -> None:
    assert runbook_cli("status", "--output", "json").json() == []
    assert runbook_cli("lock", "list", "--output", "json").json() == []


def test_the_starter_must_be_one_of_the_people(book, runbook_cli, monkeypatch):
    monkeypatch.setenv("RUNBOOK_USER", "Alice")  # alice is a person; Alice is not
    refused = runbook_cli("run", str(book))
    assert refused.code == 2
    assert refused.err.strip() == ("runbook: error: RUNBOOK_USER: Alice is not among the "
                                   "inventory's people (alice, bob, tester)")
    nothing_recorded(runbook_cli)


def test_the_shipped_inventory_refuses_a_stranger_before_anything_runs(runbook_cli,
                                                                       monkeypatch):
    monkeypatch.setenv("RUNBOOK_USER", "mallory")
    refused = runbook_cli("run", "promote", "--from", "uat1", "--to", "staging")
    assert refused.code == 2
    assert "RUNBOOK_USER: mallory is not among the inventory's people" in refused.err
    nothing_recorded(runbook_cli)


def test_anyone_may_start_when_the_inventory_says_so(isolated, write_runbook, runbook_cli,
                                                     monkeypatch):
    open_inventory = inventory(isolated, anyone_may_start=True)
    path = write_runbook(f"""\
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: book, inventory: {open_inventory}}}
        steps:
          - id: sign-off
            approval: {{prompt: "go"}}
        """)
    monkeypatch.setenv("RUNBOOK_USER", "mallory")
    run_id = started(runbook_cli, path)
    # Approving is still for the people listed.
    refused = runbook_cli("approve", run_id, "--step", "sign-off", "--by", "mallory2")
    assert refused.code == 2 and "mallory2 is not among the inventory's people" in refused.err
    monkeypatch.setenv("RUNBOOK_USER", "mallory\x1b[2J")
    assert runbook_cli("run", str(path)).code == 2  # control characters, even so


def test_names_are_matched_exactly_and_control_characters_are_refused(book, runbook_cli,
                                                                      monkeypatch):
    run_id = started(runbook_cli, book)
    wrong_case = runbook_cli("approve", run_id, "--step", "sign-off", "--by", "Bob")
    assert wrong_case.code == 2 and "Bob is not among the inventory's people" in wrong_case.err
    for where, args in (
            ("--by", ["approve", run_id, "--step", "sign-off", "--by", "bob\x1b[31m"]),
            ("--by", ["lock", "release", "--env", "live", "--reason", "x", "--by", "bob\x07"]),
            ("--by", ["abort", run_id, "--by", "bob\u202e"])):
        refused = runbook_cli(*args)
        assert refused.code == 2, args
        assert f"{where}: the name 'bob\\" in refused.err
        assert "\x1b" not in refused.err and "\x07" not in refused.err
        assert "non-printable characters" in refused.err
    for args in (["lock", "release", "--env", "live", "--reason", "x", "--by", "carol"],
                 ["abort", run_id, "--by", "carol"]):
        refused = runbook_cli(*args)
        assert refused.code == 2 and "carol is not among the inventory's people" in refused.err
    monkeypatch.setenv("RUNBOOK_USER", "tester\x1b[1A")
    assert runbook_cli("run", str(book)).code == 2
    monkeypatch.setenv("RUNBOOK_USER", "erin")
    resumed = runbook_cli("resume", run_id)
    assert resumed.code == 2 and "RUNBOOK_USER: erin is not among" in resumed.err
    # None of it was recorded: the run still waits, holds its lock, has no approval.
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert detail["run"]["status"] == "waiting" and detail["approvals"] == []
    assert [lock["run_id"] for lock in runbook_cli("lock", "list", "--output",
                                                   "json").json()] == [run_id]


def test_each_record_carries_the_os_user_and_host(book, runbook_cli, monkeypatch):
    run_id = started(runbook_cli, book)
    assert runbook_cli("approve", run_id, "--step", "sign-off", "--by", "bob").code == 0
    monkeypatch.setenv("RUNBOOK_USER", "alice")
    assert runbook_cli("resume", run_id).code == 0
    monkeypatch.setenv("RUNBOOK_USER", "tester")
    second = started(runbook_cli, book)
    assert runbook_cli("lock", "release", "--env", "live", "--reason", "INC-1",
                       "--by", "alice").code == 0
    assert runbook_cli("abort", second, "--by", "bob").code == 0
    store = open_store()
    journal = store.journal()
    store.close()
    kinds = {j.kind for j in journal}
    assert {"run-start", "approval", "resume", "lock-release", "abort", "lock"} <= kinds
    here = {"os_user": login_name(), "host": socket.gethostname()}
    assert all({k: j.data.get(k) for k in here} == here for j in journal)
    claims = {j.kind: j.data.get("by", j.data.get("user")) for j in journal
              if j.kind in ("run-start", "approval", "resume", "lock-release", "abort")}
    assert claims == {"run-start": "tester", "approval": "bob", "resume": "alice",
                      "lock-release": "alice", "abort": "bob"}


def test_what_people_typed_is_shown_with_control_characters_escaped(book, runbook_cli):
    run_id = started(runbook_cli, book)
    assert runbook_cli("approve", run_id, "--step", "sign-off", "--by", "bob",
                       "--note", "\x1b[2J\x1b[Hall good", "--ticket", "CHG-1\x1b[8m").code == 0
    # A name recorded before names were checked still cannot steer the terminal.
    store = open_store()
    store.create_run(RunRecord(id="old-run", runbook="book", path=str(book), runbook_sha="s",
                               inventory=None, inventory_sha="i", params={},
                               user="alice\x1b[2K\rmallory", started_at="2026-01-01T00:00:00",
                               plan_hash="h", lock_env="staging"))
    store.close()
    outputs = [runbook_cli("status", run_id).out, runbook_cli("status").out,
               runbook_cli("status", "old-run").out, runbook_cli("lock", "list").out,
               runbook_cli("audit", "export", "--run", run_id).out]
    for out in outputs:
        assert "\x1b" not in out and "\r" not in out
    assert "\\x1b[2J\\x1b[Hall good" in outputs[0] and "CHG-1\\x1b[8m" in outputs[0]
    assert "alice\\x1b[2K\\x0dmallory" in outputs[1]
    assert "alice\\x1b[2K\\x0dmallory" in outputs[3]
