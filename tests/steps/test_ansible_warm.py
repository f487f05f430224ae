"""The warm Ansible worker: one per run, a forked child per playbook, each child as fresh as
a new ``ansible-playbook`` (its own extra vars, check mode and step), dying with the engine."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import api
from engine.clock import SystemClock
from engine.errors import StepFailed
from engine.language.model import Step
from engine.run.execute import step_folder
from engine.steps import ansible as ansible_step
from engine.steps.ansible import warm as ansible_warm
from engine.steps.base import StepContext
from engine.store.owner import pid_alive
from tests.helpers import book
from tests.test_proc import tagged

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
REPO = Path(__file__).resolve().parents[2]


def run_step(tmp_path: Path, step_id: str, playbook: str, extravars: dict[str, Any], *,
             dry_run: bool = False, outputs: tuple[str, ...] = ()) -> dict[str, Any]:
    spec = {"playbook": str(PLAYBOOKS / playbook), "extravars": extravars}
    step = Step(id=step_id, type="ansible", spec=spec, name=step_id)
    ctx = StepContext(run_id="warm-test", step=step, spec=spec, variables={}, dry_run=dry_run,
                      workdir=tmp_path / step_id, clock=SystemClock())
    return dict(ansible_step.run(ctx).result)


@pytest.fixture
def warm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNBOOK_ANSIBLE", "warm")
    yield
    ansible_warm.close_all()


def test_each_playbook_in_one_worker_sees_only_its_own_vars_and_check_mode(tmp_path, warm):
    first = run_step(tmp_path, "first", "report-mode.yml", {"x": "one"}, dry_run=True)
    workers = list(ansible_warm._pool.workers.values())
    second = run_step(tmp_path, "second", "report-other.yml", {"y": "two"})
    third = run_step(tmp_path, "third", "report-mode.yml", {"x": "three"})
    assert list(ansible_warm._pool.workers.values()) == workers and len(workers) == 1
    assert first["outputs"] == {"x": "one", "y": "unset", "check": True,
                                "playbook": "Report the run's view", "step": "first",
                                "pid": first["outputs"]["pid"]}
    assert second["outputs"] == {"x": "unset", "y": "two", "check": False,
                                 "playbook": "Report from another playbook", "step": "second"}
    assert third["outputs"]["x"] == "three" and third["outputs"]["check"] is False
    # Each playbook ran in a process of its own, not in the worker.
    pids = {int(first["outputs"]["pid"]), int(third["outputs"]["pid"])}
    assert len(pids) == 2 and workers[0].process.pid not in pids


def test_a_failed_playbook_leaves_the_worker_ready_for_the_next(tmp_path, warm):
    with pytest.raises(StepFailed, match="Refuse: the environment is not ready"):
        run_step(tmp_path, "fail", "fail.yml", {})
    assert run_step(tmp_path, "after", "report-other.yml", {"y": "next"})["outputs"]["y"] \
        == "next"


def test_the_artifacts_have_ansible_runners_layout_in_both_ways(tmp_path, monkeypatch):
    found = {}
    for mode in ("runner", "warm"):
        monkeypatch.setenv("RUNBOOK_ANSIBLE", mode)
        result = run_step(tmp_path / mode, "echo", "report-other.yml", {"y": "same"})
        (folder,) = (tmp_path / mode / "echo" / "artifacts").iterdir()
        events = sorted((json.loads(p.read_text()) for p in (folder / "job_events").iterdir()),
                        key=lambda event: event["counter"])
        found[mode] = {
            "files": sorted(p.name for p in folder.iterdir()),
            "events": [(e["event"], e.get("event_data", {}).get("task")) for e in events],
            "keys": sorted({key for e in events for key in e}),
            "rc": (folder / "rc").read_text(), "status": (folder / "status").read_text(),
            "command": sorted(json.loads((folder / "command").read_text())),
            "stdout": "TASK [Report]" in (folder / "stdout").read_text(),
            "result": result,
        }
    ansible_warm.close_all()
    assert found["warm"] == found["runner"]
    assert found["warm"]["rc"] == "0" and found["warm"]["status"] == "successful"
    assert found["warm"]["result"]["outputs"]["y"] == "same"


# The task's ancestors that run steps/ansible/host.py (forks keep its command line): the task's
# process, the playbook's, the worker, then the guard that runs it. The two outermost are
# killed, by their ancestry rather than by a scan of every process (whose order depends on
# how the machine numbered them).
KILL_WORKER = """\
chain=""
p=$$
while [ "$p" -gt 1 ]; do
  p=$(awk '{print $4}' "/proc/$p/stat")
  if grep -q steps/ansible/host.py "/proc/$p/cmdline" 2>/dev/null; then chain="$chain $p"; fi
done
kill -9 $(echo $chain | awk '{print $NF, $(NF-1)}')
"""


def kill_once_book(isolated: Path, write_runbook: Any, kill: str) -> tuple[Path, Path]:
    """A runbook of one step, retried once, whose first attempt runs the shell script
    ``kill`` (it kills the step's worker) and whose retry reports ``survived``: the runbook
    and the file the first attempt leaves."""
    marker = isolated / "killed-once"
    playbook = isolated / "kill-worker.yml"
    playbook.write_text(json.dumps([{
        "name": "Kill the worker once", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Kill it", "ansible.builtin.shell": f"touch {marker}\n" + kill,
             "args": {"creates": str(marker)}},
            {"name": "Report", "ansible.builtin.set_stats": {
                "per_host": False, "data": {"summary": "survived"}}},
        ]}]))
    return write_runbook(book(
        f"  - id: crash\n    retries: 1\n    delay: 0\n    ansible: {{playbook: {playbook}}}\n")
    ), marker


def test_a_worker_that_dies_fails_only_its_attempt_and_the_next_starts_a_new_one(
        write_runbook: Any, runbook_cli: Any, isolated: Path, warm: None) -> None:
    """The first attempt's task kills the run's worker: that attempt fails saying so, the
    retry runs in a new worker, and the run goes on."""
    path, marker = kill_once_book(isolated, write_runbook, KILL_WORKER)
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert "attempt 1 failed: the Ansible worker ended during the playbook " \
        "(killed by SIGKILL)" in result.out
    assert "survived" in result.out
    assert marker.exists()


def test_an_unknown_way_of_running_ansible_is_refused_before_the_run(
        write_runbook: Any, runbook_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_runbook(book(
        f"  - id: a\n    ansible: {{playbook: {PLAYBOOKS / 'report-other.yml'}}}\n"))
    monkeypatch.setenv("RUNBOOK_ANSIBLE", "fast")
    result = runbook_cli("run", str(path))
    assert result.code == 2
    assert "RUNBOOK_ANSIBLE is 'fast'" in result.err and "warm, runner" in result.err
    assert runbook_cli("history").out.strip() in ("", "no history yet")
    assert not (Path(os.environ["RUNBOOK_HOME"]) / "runs").exists() or \
        not any((Path(os.environ["RUNBOOK_HOME"]) / "runs").iterdir())


@pytest.mark.parametrize("mode", ["warm", "runner"])
def test_a_playbook_past_its_timeout_is_ended_with_everything_it_started(
        mode: str, write_runbook: Any, runbook_cli: Any, isolated: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_ANSIBLE", mode)
    started, go, done = isolated / "started", isolated / "go", isolated / "done"
    path = write_runbook(book(
        f"  - id: wait\n    ansible:\n      playbook: {PLAYBOOKS / 'wait-for-go.yml'}\n"
        f"      timeout: 2\n"
        f"      extravars: {{started: '{started}', go: '{go}', done: '{done}'}}\n"
        "  - id: next\n    command: {argv: [echo, next step ran]}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 1, result.out
    assert "playbook wait-for-go.yml timed out after 2 s" in result.out
    assert "next step ran" not in result.out
    run_id = result.out.split()[1]
    # Nothing of the step runs on: the go comes too late to let it finish.
    assert [p for p in tagged(run_id) if pid_alive(p)] == []
    go.touch()
    assert not done.exists()


def test_an_ansible_cfg_written_by_an_earlier_step_is_read_by_the_next_playbook(
        write_runbook: Any, runbook_cli: Any, isolated: Path) -> None:
    """The warm worker started with the run read Ansible's configuration then; a step that
    writes ./ansible.cfg afterwards is followed by a worker that reads it."""
    playbook = isolated / "read-config.yml"
    playbook.write_text(json.dumps([{
        "name": "Read a setting", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Report", "ansible.builtin.set_stats": {
            "per_host": False,
            "data": {"summary": "forks={{ lookup('ansible.builtin.config', 'DEFAULT_FORKS') }}"}}}],
    }]))
    path = write_runbook(book(
        f"  - id: before\n    ansible: {{playbook: {playbook}}}\n",
        "  - id: configure\n    command: {argv: [sh, -c, 'printf \"[defaults]\\\\nforks = 3\\\\n\" "
        "> ansible.cfg']}\n",
        f"  - id: after\n    ansible: {{playbook: {playbook}}}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert "✓ before ok" in result.out and "forks=5" in result.out
    assert "forks=3" in result.out


@pytest.mark.parametrize(("runbook", "clients"), [
    ("promote", ["kubernetes", "ecr", "apprise"]), ("rollback", ["kubernetes", "ecr", "apprise"]),
    ("hotfix", ["ecr", "apprise", "kubernetes"]), ("db-restore", ["rds", "aws"]),
    ("demo", [])])
def test_the_worker_is_told_which_clients_a_runbooks_playbooks_use(runbook, clients,
                                                                   monkeypatch):
    monkeypatch.setenv("RUNBOOK_RUNBOOKS_PATH", str(REPO / "runbooks"))
    book = api.load_runbook(runbook)
    steps = [(step, step_folder(step, book)) for step in book.all_steps()]
    assert ansible_step.clients_used(steps) == clients


def test_a_playbook_named_by_a_template_leaves_the_clients_unknown(tmp_path):
    step = Step(id="s", type="ansible", spec={"playbook": "{{ vars.book }}"}, name="s")
    assert ansible_step.clients_used([(step, tmp_path)]) is None
