"""The notify step against a real HTTP receiver, through Apprise's json:// URLs given in
environment variables: what arrives, what is recorded, what never shows."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine import api
from tests.conftest import runbook_process
from tests.test_execute import run_id_of
from tests.test_resume_kill import wait_for

INVENTORY = """\
apiVersion: runbook/v1
kind: Inventory
metadata: {name: team}
people: {tester: {roles: [release]}}
notify:
  stakeholders:
    - {env: TEAM_STAKEHOLDERS_URL}
  oncall:
    - {env: TEAM_ONCALL_URL}
checklists:
  go-live:
    - id: told
      text: "Communication sent to stakeholders"
      check: {notified: {audience: stakeholders}}
    - {id: paged, text: "On-call team notified", check: {notified: {audience: oncall}}}
"""

BOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: book, inventory: {inventory}, lock: prod}}
params:
  release: {{type: string, default: "1.4.2"}}
steps:
  - id: announce
    notify:
      to: [stakeholders, oncall]
      title: "Releasing {{{{ params.release }}}}"
      body: "run {{{{ run.id }}}} by {{{{ run.user }}}}"
{middle}
  - id: tell-done
    notify: {{to: oncall, type: success, title: "Released {{{{ params.release }}}}", body: done}}
"""
CHECKLIST = """\
  - id: checklist
    approval: {prompt: go, items: "{{ inventory.checklists['go-live'] }}"}
"""
# Told once per run: the second time the step runs, it goes straight on.
SLEEP = ("import pathlib,time; p=pathlib.Path('reached'); first=not p.exists(); p.touch();"
         " time.sleep(60 if first else 0)")
PAUSE = f"""\
  - id: pause
    command: {{argv: [python3, -c, "{SLEEP}"]}}
"""
TOKEN = "T0KEN-5ecret-9f8e7d"


def by_step(messages: list[tuple[str, ...]]) -> list[list[tuple[str, ...]]]:
    """Messages (audience, title, ...) in the order of the steps that sent them: one step's
    messages go out together, in no fixed order among themselves."""
    steps: list[list[tuple[str, ...]]] = []
    for message in messages:
        if steps and steps[-1][0][1] == message[1]:
            steps[-1].append(message)
        else:
            steps.append([message])
    return [sorted(step) for step in steps]



class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, dict[str, Any]]] = []

    def url(self, audience: str) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hooks/{audience}/{TOKEN}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path.split("/")[2], json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture

def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEAM_STAKEHOLDERS_URL", server.url("stakeholders"))
    monkeypatch.setenv("TEAM_ONCALL_URL", server.url("oncall"))
    yield server
    server.shutdown()
    server.server_close()


def write_book(isolated: Path, middle: str = "") -> tuple[Path, Path]:
    inventory = isolated / "team.yaml"
    inventory.write_text(INVENTORY)
    path = isolated / "book.yaml"
    path.write_text(BOOK.format(inventory=inventory, middle=middle))
    return path, inventory


def everything_written(isolated: Path) -> str:
    """Every file of the state store and of the runs' folders, as text."""
    files = [p for p in (isolated.parent / "state").rglob("*") if p.is_file()]
    return "\n".join(p.read_bytes().decode(errors="replace") for p in files)


def test_each_audience_gets_its_message_and_the_checklist_counts_it(
        receiver, runbook_cli, isolated):
    path, _ = write_book(isolated, CHECKLIST)
    plan = runbook_cli("plan", str(path))
    assert plan.code == 0, plan.err
    assert "notifies stakeholders, oncall: Releasing 1.4.2" in plan.out
    ran = runbook_cli("run", str(path))
    assert ran.code == 0, ran.err
    run_id = run_id_of(ran.out)
    assert by_step([(who, m["title"], m["message"], m["type"])
                    for who, m in receiver.received]) == by_step([
        ("stakeholders", "Releasing 1.4.2", f"run {run_id} by tester", "info"),
        ("oncall", "Releasing 1.4.2", f"run {run_id} by tester", "info"),
        ("oncall", "Released 1.4.2", "done", "success")])
    detail = runbook_cli("status", run_id, "--output", "json").json()
    steps = {s["step_id"]: s for s in detail["steps"]}  # type: ignore[index]
    deliveries = steps["announce"]["result"]["deliveries"]
    assert [(d["audience"], d["service"], d["delivered"]) for d in deliveries] == [
        ("stakeholders", "JSON", True), ("oncall", "JSON", True)]
    items = steps["checklist"]["result"]["items"]
    assert items["told"]["passed"] and items["paged"]["passed"]
    assert items["paged"]["detail"].startswith("oncall told at ")
    assert items["paged"]["title"] == "Releasing 1.4.2"
    record = runbook_cli("audit", "export", "--run", run_id)
    assert "oncall told at" in record.out
    # The URLs, and the token in them, show nowhere: outputs, store, runs' folders.
    shown = plan.out + plan.err + ran.out + ran.err + record.out + everything_written(isolated)
    assert TOKEN not in shown
    assert receiver.url("oncall").removeprefix("json://") not in shown


def test_an_unreachable_receiver_is_a_warning_and_the_run_succeeds(
        receiver, runbook_cli, isolated, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("TEAM_ONCALL_URL", f"json://127.0.0.1:{closed}/hooks/{TOKEN}")
    path, _ = write_book(isolated)
    ran = runbook_cli("run", str(path))
    assert ran.code == 0, ran.err
    assert "warning: not delivered to oncall (A Connection error occurred sending JSON " \
           "notification to 127.0.0.1.); delivered to stakeholders" in ran.out
    assert [who for who, _ in receiver.received] == ["stakeholders"]
    detail = runbook_cli("status", run_id_of(ran.out), "--output", "json").json()
    announce = detail["steps"][0]  # type: ignore[index]
    assert announce["status"] == "ok" and announce["result"]["delivered"] is False
    assert TOKEN not in ran.out + everything_written(isolated)
    # A checklist that counts on that message does not pass, and says why.
    path, _ = write_book(isolated, CHECKLIST)
    failed = runbook_cli("run", str(path))
    assert failed.code == 1
    assert "paged: the message to oncall (Releasing 1.4.2) was not delivered: A Connection " \
           "error" in failed.out + failed.err


def test_a_missing_url_variable_refuses_the_run_naming_the_inventory_line(
        receiver, runbook_cli, isolated, monkeypatch):
    monkeypatch.delenv("TEAM_ONCALL_URL")
    path, inventory = write_book(isolated)
    ran = runbook_cli("run", str(path))
    assert ran.code == 2
    line = INVENTORY.splitlines().index("    - {env: TEAM_ONCALL_URL}") + 1
    assert ran.err.strip() == (f"runbook: error: {inventory}:{line}: at $.notify.oncall.0.env: "
                               "the environment variable TEAM_ONCALL_URL is not set: it holds "
                               "the URL that tells oncall")
    assert receiver.received == []
    assert runbook_cli("lock", "list").out.strip() == "no environment is locked"
    assert api.journal() == []  # nothing recorded


def test_a_message_recorded_as_sent_is_not_sent_again_on_resume(
        receiver, runbook_cli, isolated):
    path, _ = write_book(isolated, PAUSE)
    proc = runbook_process("run", str(path))
    wait_for(isolated / "reached")  # announce is recorded done: the next step has started
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    resumed = runbook_cli("resume", run_id_of(out))
    assert resumed.code == 0, resumed.err
    assert by_step([(who, m["title"]) for who, m in receiver.received]) == by_step([
        ("stakeholders", "Releasing 1.4.2"), ("oncall", "Releasing 1.4.2"),
        ("oncall", "Released 1.4.2")])


@pytest.mark.parametrize("keep", ["0", "600"], ids=["worker-per-run", "kept-worker"])
def test_a_run_with_a_warm_worker_sends_its_messages_there_and_never_loads_apprise(
        keep, receiver, runbook_cli, isolated, monkeypatch):
    """Apprise loads its plugins (about a second) in the process that sends: a run with
    playbooks has the warm worker do it, and the engine's process never imports it."""
    from tests.steps.test_ansible_kept import end_kept

    playbook = Path(__file__).resolve().parent.parent / "playbooks" / "report-other.yml"
    middle = f"  - id: play\n    ansible: {{playbook: {playbook}, extravars: {{y: two}}}}\n"
    path, _ = write_book(isolated, middle)
    monkeypatch.setenv("RUNBOOK_ANSIBLE", "warm")
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", keep)
    for name in [n for n in sys.modules if n == "apprise" or n.startswith("apprise.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        ran = runbook_cli("run", str(path))
        assert ran.code == 0, ran.out + ran.err
        assert "apprise" not in sys.modules
        assert by_step([(who, m["title"]) for who, m in receiver.received]) == by_step([
            ("stakeholders", "Releasing 1.4.2"), ("oncall", "Releasing 1.4.2"),
            ("oncall", "Released 1.4.2")])
        assert ran.out.count("delivered to") == 2
    finally:
        end_kept()
