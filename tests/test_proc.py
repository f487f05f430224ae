"""Child processes end with the engine, all of them: a playbook's whole process tree, a
command's grandchildren, and whatever a killed attempt left behind when the run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.store.owner import pid_alive
from engine.system import proc
from tests.conftest import HEADER, runbook_process
from tests.test_resume_kill import wait_for

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


def tagged(run_id: str) -> list[int]:
    """Processes of this machine whose environment says they belong to ``run_id``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{proc.RUN_TAG}={run_id}".encode() in environ:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


def until_gone(run_id: str, timeout: float = 30) -> list[int]:
    """Wait for the run's processes to end (the guard reacts to the engine's death); return
    the ones still there when the time is up."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in tagged(run_id) if pid_alive(p)]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def run_id_from(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    return p.stdout.readline().split()[1]


def test_sigkill_during_a_playbook_task_leaves_no_ansible_process(isolated, write_runbook):
    started, late = isolated / "started", isolated / "late"
    path = write_runbook(HEADER + f"""steps:
  - id: nap
    ansible:
      playbook: {PLAYBOOKS / 'sleep-then-write.yml'}
      extravars: {{started: {started}, late: {late}, nap: 60}}
""")
    engine = runbook_process("run", str(path))
    run_id = run_id_from(engine)
    wait_for(started, timeout=120)
    # The task's shell and its sleep run: ansible-playbook, a worker, the module, sh, sleep.
    deadline = time.monotonic() + 60
    while not any(cmdline(p) == [b"sleep", b"60"] for p in tagged(run_id)):
        assert time.monotonic() < deadline, "the task never started its sleep"
        time.sleep(0.05)
    assert len(tagged(run_id)) >= 3
    engine.send_signal(signal.SIGKILL)
    engine.communicate(timeout=10)
    assert until_gone(run_id) == []
    assert not late.exists()


def test_sigkill_during_a_command_ends_its_grandchildren(isolated, write_runbook):
    """Many shells, each waiting on a sleep and then writing a file: killed one by one, some
    shell would see its sleep die first and write its file; the whole tree is stopped first."""
    started, late = isolated / "started", isolated / "late"
    late.mkdir()
    shells = " ".join(f"(sleep 60; : > {late}/{n}) &" for n in range(24))
    path = write_runbook(HEADER + f"""steps:
  - id: nap
    command: {{argv: [sh, -c, "{shells} touch {started}; wait"]}}
""")
    engine = runbook_process("run", str(path))
    run_id = run_id_from(engine)
    wait_for(started)
    deadline = time.monotonic() + 60
    while sum(cmdline(p) == [b"sleep", b"60"] for p in tagged(run_id)) < 24:
        assert time.monotonic() < deadline, "the shells never started their sleeps"
        time.sleep(0.05)
    engine.send_signal(signal.SIGKILL)
    engine.communicate(timeout=10)
    assert until_gone(run_id) == []
    assert sorted(late.iterdir()) == []


def test_resume_first_ends_what_an_earlier_attempt_left_alive(isolated, write_runbook,
                                                               runbook_cli):
    gate = isolated / "go"
    path = write_runbook(HEADER + f"""steps:
  - id: wait-for-go
    command: {{argv: [test, -e, {gate}]}}
""")
    first = runbook_cli("run", str(path))
    assert first.code == 1
    run_id = first.out.split()[1]
    # A process of the run that outlived its engine (as one started outside the guard would).
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                env={**os.environ, proc.RUN_TAG: run_id},
                                start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                             env={**os.environ, proc.RUN_TAG: "another-run"},
                             start_new_session=True)
    try:
        gate.touch()
        assert runbook_cli("resume", run_id).code == 0
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None  # another run's process is left alone
    finally:
        for p in (leftover, other):
            p.kill()
            p.wait()


def test_a_command_that_cannot_start_says_why(isolated):
    done = proc.run(["no-such-program-here"], run_id="r")
    assert done.rc == 127
    assert "no-such-program-here" in done.stderr


def wait_for_go_book(isolated: Path, write_runbook: Any) -> tuple[Path, Path, Path, Path]:
    """A runbook whose playbook says it started, waits for a ``go`` file, then writes
    ``done``: the runbook and those three paths."""
    started, go, done = isolated / "started", isolated / "go", isolated / "done"
    path = write_runbook(HEADER + f"""steps:
  - id: wait
    ansible:
      playbook: {PLAYBOOKS / 'wait-for-go.yml'}
      extravars: {{started: {started}, go: {go}, done: {done}}}
""")
    return path, started, go, done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_playbook_task_ends_it_and_the_worker_then_the_run_resumes(
        sig, isolated, write_runbook, runbook_cli):
    path, started, go, done = wait_for_go_book(isolated, write_runbook)
    engine = runbook_process("run", str(path))
    run_id = run_id_from(engine)
    wait_for(started, timeout=120)
    deadline = time.monotonic() + 60
    while not any(b"AnsiballZ_wait_for" in b" ".join(cmdline(p)) for p in tagged(run_id)):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    engine.send_signal(sig)
    out, _ = engine.communicate(timeout=60)
    assert engine.returncode == 130, out
    assert until_gone(run_id) == []  # the task, the playbook and the warm worker
    go.touch()
    assert not done.exists()
    resumed = runbook_cli("resume", run_id)
    assert resumed.code == 0, resumed.out
    assert done.read_text() == "done\n"


def test_what_a_command_leaves_running_when_it_ends_is_ended_with_it(isolated, write_runbook,
                                                                      runbook_cli):
    """A background process whose parent has exited (an orphan) is still the step's: it ends
    when the step's command does, and never writes its file."""
    late = isolated / "late"
    path = write_runbook(HEADER + f"""steps:
  - id: leave-behind
    command: {{argv: [sh, -c, "(sleep 600; touch {late}) & exit 0"]}}
  - id: after
    command: {{argv: [echo, after]}}
""")
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    run_id = result.out.split()[1]
    assert until_gone(run_id) == []
    assert not late.exists()
