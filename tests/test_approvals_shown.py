"""Approvals a person can read: each with its gate or item text, person, role, ticket and
time, in status, the plan and the change record; a gate that requires a ticket refuses an
approval without one; a waiting run's hint is a command that works."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

INVENTORY = {
    "apiVersion": "runbook/v1", "kind": "Inventory", "metadata": {"name": "people"},
    "people": {"alice": {"roles": ["cab", "release"]}, "bob": {"roles": ["cab"]},
               "carol": {"roles": ["qa"]}, "tester": {"roles": ["release"]}},
    "checklists": {"release": [
        {"id": "tests", "text": "Unit tests pass"},
        {"id": "notes", "text": "Release notes written"},
        {"id": "cab-ok", "text": "CAB approval",
         "approval": {"gate": "cab", "role": "cab", "quorum": 2, "required_ticket": True}}]}}


def write(isolated: Path) -> Path:
    inventory = isolated / "people.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    book = isolated / "release.yaml"
    book.write_text(f"""\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: release, inventory: {inventory}}}
steps:
  - id: checklist
    approval: {{prompt: "release", items: "{{{{ inventory.checklists.release }}}}"}}
  - id: sign-off
    approval: {{prompt: "sign off"}}
  - id: done
    command: {{argv: [echo, released]}}
""")
    return book


def hinted(out: str) -> list[list[str]]:
    """The commands a waiting run's output says to run, as argv after `runbook`."""
    lines = out.split("approve with:\n", 1)[1].split("\nthen:", 1)[0].splitlines()
    return [shlex.split(line.split("#", 1)[0])[1:] for line in lines]


def fill(argv: list[str], name: str, ticket: str = "") -> list[str]:
    return [name if a == "NAME" else ticket if a == "TICKET" else a for a in argv]


def test_waiting_hints_are_commands_that_work(isolated, runbook_cli):
    book = write(isolated)
    first = runbook_cli("run", str(book))
    assert first.code == 3, first.out
    run_id = first.out.split()[1]
    commands = hinted(first.out)
    assert commands == [
        ["approve", run_id, "--step", "checklist", "--item", "tests", "--item", "notes",
         "--by", "NAME"],
        ["approve", run_id, "--gate", "cab", "--by", "NAME", "--ticket", "TICKET"]]
    items, gate = commands
    assert runbook_cli(*fill(items, "carol")).code == 0
    status = runbook_cli("status", run_id).out
    assert "--item" not in status  # what is given is no longer asked for
    assert f"runbook approve {run_id} --gate cab --by NAME --ticket TICKET   # 2 more " \
        "approvals, each by another person with the cab role" in status
    for person, ticket in (("alice", "CHG-9"), ("bob", "CHG-10")):
        given = runbook_cli(*fill(gate, person, ticket))
        assert given.code == 0, given.err
    second = runbook_cli("resume", run_id)
    assert second.code == 3, second.out
    assert hinted(second.out) == [["approve", run_id, "--step", "sign-off", "--by", "NAME"]]
    status = runbook_cli("status", run_id)
    assert f"runbook approve {run_id} --step sign-off --by NAME" in status.out
    assert runbook_cli(*fill(hinted(second.out)[0], "carol")).code == 0
    assert runbook_cli("resume", run_id).code == 0


def test_a_gate_that_requires_a_ticket_refuses_an_approval_without_one(isolated, runbook_cli):
    run_id = runbook_cli("run", str(write(isolated))).out.split()[1]
    refused = runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice")
    assert refused.code == 2
    assert len(refused.err.strip().splitlines()) == 1 and "--ticket" in refused.err
    blank = runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket", " ")
    assert blank.code == 2
    assert runbook_cli("status", run_id, "--output", "json").json()["approvals"] == []


def test_status_and_change_record_show_what_each_approval_was_for(isolated, runbook_cli):
    run_id = runbook_cli("run", str(write(isolated))).out.split()[1]
    runbook_cli("approve", run_id, "--step", "checklist", "--item", "tests", "--by", "carol")
    runbook_cli("approve", run_id, "--step", "checklist", "--item", "notes", "--by", "alice")
    runbook_cli("approve", run_id, "--gate", "cab", "--by", "bob", "--ticket", "CHG-9",
                "--note", "CAB of Tuesday")
    status = runbook_cli("status", run_id)
    assert status.code == 0
    lines = status.out.split("approvals:\n", 1)[1].splitlines()
    assert lines[0].startswith("  checklist / tests “Unit tests pass”: carol (role qa), "
                               "ticket —, at ")
    assert lines[1].startswith("  checklist / notes “Release notes written”: alice "
                               "(role cab, release), ticket —, at ")
    assert lines[2].startswith("  gate cab “CAB approval”: bob (role cab), ticket CHG-9, at ")
    assert lines[2].endswith(": CAB of Tuesday")
    shown = runbook_cli("status", run_id, "--output", "json").json()
    gate = next(a for a in shown["approvals"] if a["gate"] == "cab")
    assert (gate["by"], gate["role"], gate["ticket"], gate["text"]) == \
        ("bob", "cab", "CHG-9", "CAB approval") and gate["at"]
    out = isolated / "change.md"
    assert runbook_cli("audit", "export", "--run", run_id, "--file", str(out)).code == 0
    rows = [row for row in out.read_text().splitlines() if row.startswith("| ")]
    assert any(row.startswith("| step `checklist` / `tests` | Unit tests pass | carol | qa |")
               for row in rows)
    assert any(row.startswith("| gate `cab` | CAB approval | bob | cab | CHG-9 |")
               for row in rows)


def test_the_plan_shows_the_approvals_given_to_it(isolated, runbook_cli):
    book = write(isolated)
    plan = runbook_cli("plan", str(book), "--output", "json").json()
    assert plan["approvals"] == []
    assert runbook_cli("approve", "--plan", plan["plan_hash"], "--gate", "cab",
                       "--by", "bob").code == 2
    assert runbook_cli("approve", "--plan", plan["plan_hash"], "--gate", "cab", "--by", "bob",
                       "--ticket", "CHG-3").code == 0
    again = runbook_cli("plan", str(book), "--output", "json").json()
    assert again["plan_hash"] == plan["plan_hash"]
    [given] = again["approvals"]
    assert (given["gate"], given["text"], given["by"], given["role"], given["ticket"]) == \
        ("cab", "CAB approval", "bob", "cab", "CHG-3") and given["at"]
    text = runbook_cli("plan", str(book)).out
    assert "approvals given to this plan:" in text
    assert "gate cab (given to plan " in text and "“CAB approval”: bob (role cab), " \
        "ticket CHG-3" in text
    markdown = runbook_cli("plan", str(book), "--output", "markdown").out
    assert "## Approvals given to this plan" in markdown
    assert "| `cab` | CAB approval | bob | cab | CHG-3 |" in markdown
