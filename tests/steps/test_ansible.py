"""The ansible step with real ansible-runner and ansible-core against localhost."""

import json
import os
from pathlib import Path

from tests.helpers import book

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def write_book(dest: Path) -> str:
    return book(
        f"  - id: write\n    ansible:\n      playbook: {PLAYBOOKS / 'write.yml'}\n"
        f"      extravars: {{dest: '{dest}', content: '{{{{ params.content }}}}'}}\n"
        "      outputs: [written]\n    register: wrote\n",
        "  - id: after\n    command: {argv: [echo, \"{{ wrote.outputs.written }} "
        "changed={{ wrote.changed }}\"]}\n",
        params="params:\n  content: {type: string, default: hello}\n")


def test_playbook_runs_streams_events_and_registers_results(write_runbook, runbook_cli,
                                                            isolated):
    dest = isolated / "out.txt"
    path = write_runbook(write_book(dest))
    result = runbook_cli("run", str(path), "--content", "v42")
    assert result.code == 0, result.out
    assert dest.read_text() == "v42\n"
    assert "ok (changed): Write the file [localhost]" in result.out
    assert "    wrote out.txt changed=True" in result.out
    run_id = result.out.split()[1]
    artifacts = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id / "write" / "artifacts"
    (ident,) = list(artifacts.iterdir())
    assert (ident / "job_events").is_dir() and (ident / "rc").read_text() == "0"


def test_plan_runs_the_playbook_in_check_mode_and_shows_the_diff(write_runbook, runbook_cli,
                                                                 isolated):
    dest = isolated / "out.txt"
    path = write_runbook(write_book(dest))
    result = runbook_cli("plan", str(path), "--content", "v43")
    assert result.code == 0, result.out
    assert not dest.exists()
    assert "dry run checked" in result.out
    dest.write_text("old\n")
    data = runbook_cli("plan", str(path), "--content", "v43", "--output", "json").json()
    write = data["steps"][0]["dry_run"]
    assert write["status"] == "checked"
    assert write["result"]["results"]["Write the file"]["changed"] is True
    assert dest.read_text() == "old\n"


def test_failing_playbook_fails_the_step_with_the_task_message(write_runbook, runbook_cli):
    path = write_runbook(book(
        f"  - id: fail\n    ansible: {{playbook: {PLAYBOOKS / 'fail.yml'}}}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    assert "failed: Refuse [localhost]" in result.out
    assert "playbook fail.yml: Refuse: the environment is not ready" in result.out


def test_playbook_paths_are_relative_to_the_runbook(isolated, runbook_cli, write_runbook):
    (isolated / "playbooks").mkdir()
    (isolated / "playbooks" / "w.yml").write_text((PLAYBOOKS / "write.yml").read_text())
    path = write_runbook(book(
        "  - id: w\n    ansible:\n      playbook: playbooks/w.yml\n"
        f"      extravars: {{dest: '{isolated / 'x.txt'}', content: x}}\n"))
    elsewhere = isolated / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    assert runbook_cli("run", str(path)).code == 0
    assert (isolated / "x.txt").read_text() == "x\n"


def test_secrets_are_masked_in_the_runners_artifacts(write_runbook, runbook_cli, isolated,
                                                     monkeypatch):
    monkeypatch.setenv("RUNBOOK_SECRET_TOKEN", "s3cr3t-value-42")
    dest = isolated / "secret.txt"
    path = write_runbook(book(
        f"  - id: write\n    ansible:\n      playbook: {PLAYBOOKS / 'write.yml'}\n"
        f"      extravars: {{dest: '{dest}', content: '{{{{ params.token }}}}'}}\n",
        params="params:\n  token: {type: string, secret: true}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert dest.read_text() == "s3cr3t-value-42\n"  # the playbook got the real value
    home = Path(os.environ["RUNBOOK_HOME"])
    leaked = [p for p in home.rglob("*") if p.is_file() and b"s3cr3t-value-42" in p.read_bytes()]
    assert leaked == []


def test_the_step_record_keeps_each_tasks_plain_values_and_the_artifacts_the_rest(
        write_runbook, runbook_cli, isolated):
    dest = isolated / "out.txt"
    path = write_runbook(write_book(dest))
    result = runbook_cli("run", str(path), "--content", "v44")
    assert result.code == 0, result.out
    run_id = result.out.split()[1]
    [step] = [s for s in runbook_cli("status", run_id, "--output", "json").json()["steps"]
              if s["step_id"] == "write"]
    task = step["result"]["results"]["Write the file"]
    assert task["changed"] is True and task["dest"] == str(dest)
    # The module's arguments, and set_stats' data (the step's outputs), are not repeated in
    # the record; the run's artifacts hold each task's whole result.
    assert "invocation" not in task and "invocation" not in json.dumps(step["result"])
    assert "ansible_stats" not in step["result"]["results"]["Report"]
    assert step["result"]["outputs"] == {"written": "wrote out.txt"}
    events = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id / "write" / "artifacts"
    kept = "".join(p.read_text() for p in events.rglob("job_events/*.json"))
    assert '"invocation"' in kept and '"ansible_stats"' in kept
