"""The Ansible worker kept warm between runs (``RUNBOOK_KEEP_WARM``, the default outside the
tests): the next command's playbooks run in it at once, each still in a child as fresh as a
new ``ansible-playbook``; a child ends with its engine (SIGKILL included) and at Ctrl-C; a
worker that dies fails only the attempt in flight; another configuration gets a worker of
its own; an idle worker goes away."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.steps.ansible import warm as ansible_warm
from engine.store.owner import pid_alive
from engine.system import proc
from tests.conftest import runbook_process
from tests.helpers import book
from tests.test_identity import nothing_recorded
from tests.test_proc import cmdline, run_id_from, wait_for_go_book
from tests.test_resume_kill import wait_for

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _is_kept(pid: int) -> bool:
    argv = cmdline(pid)
    return any(a.endswith(b"steps/ansible/host.py") for a in argv) and b"--serve" in argv


def kept_workers() -> list[int]:
    """The kept workers of this test: those started with its $HOME."""
    home = f"HOME={os.environ['HOME']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        # Not its forks (a playbook's process and Ansible's have its command line).
        if entry.name.isdigit() and _is_kept(int(entry.name)) and \
                not _is_kept(_parent(int(entry.name))):
            try:
                if home in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def descendants(root: int) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                    if _parent(p) in frontier} - found
        found |= frontier
    return found


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNBOOK_ANSIBLE", "warm")
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", "600")
    yield
    ansible_warm.close_all()
    end_kept()


def end_kept() -> None:
    """End this test's kept workers, and remove what they leave (socket, log, home)."""
    for pid in kept_workers():
        place = Path(cmdline(pid)[4].decode())
        proc.end_tree(pid)
        for leftover in (place, place.with_suffix(".log"), place.with_suffix(".lock")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(place.with_suffix(""), ignore_errors=True)


# The kept worker the playbook runs under, found as it runs (0: none): the eldest of the
# processes with its command line (the playbook's process and Ansible's are its forks).
FIND_KEPT = """p=$$ found=0
while [ "$p" -gt 1 ]; do
  if tr '\\0' '\\n' < "/proc/$p/cmdline" 2>/dev/null | grep -qx -- --serve; then found=$p; fi
  p=$(awk '{print $4}' "/proc/$p/stat")
done
echo $found"""


def report_book(write_runbook: Any, name: str, x: str) -> Path:
    playbook = Path(os.getcwd()) / "report-worker.yml"
    playbook.write_text(json.dumps([{
        "name": "Report", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Find the worker", "ansible.builtin.shell": FIND_KEPT,
             "register": "found", "check_mode": False},
            {"name": "Report", "ansible.builtin.set_stats": {"per_host": False, "data": {
                "x": "{{ x }}", "check": "{{ ansible_check_mode }}",
                "step": "{{ lookup('ansible.builtin.env', 'RUNBOOK_STEP_ID') }}",
                "pid": "{{ found.stdout }}"}}}]}]))
    return write_runbook(book(
        f"  - id: report\n    ansible:\n      playbook: {playbook}\n"
        f"      extravars: {{x: {x}}}\n      outputs: [x, check, step, pid]\n"), name=name)


def outputs(runbook_cli: Any, path: Path, *args: str) -> dict[str, Any]:
    done = runbook_cli("run", str(path), *args, "--output", "json")
    assert done.code == 0, done.out + done.err
    shown = json.loads(done.out)
    if "--dry-run" in args:  # a plan: each step's check-mode run
        return dict(shown["steps"][0]["dry_run"]["result"]["outputs"])
    steps = {s["step_id"]: s for s in shown["steps"]}
    return dict(steps["report"]["result"]["outputs"])


def test_the_next_run_uses_the_worker_the_last_one_left_warm(write_runbook, runbook_cli, kept):
    first = outputs(runbook_cli, report_book(write_runbook, "first", "one"))
    worker = int(first["pid"])
    assert worker and pid_alive(worker)  # still there after its run ended
    assert kept_workers() == [worker]
    second = outputs(runbook_cli, report_book(write_runbook, "second", "two"), "--dry-run")
    # The same worker, and the second playbook saw only its own vars and check mode.
    assert int(second["pid"]) == worker
    assert (first["x"], first["check"]) == ("one", False)
    assert (second["x"], second["check"]) == ("two", True)
    assert first["step"] == second["step"] == "report"
    # It holds no run's environment: neither run's tags nor its credentials.
    environ = Path(f"/proc/{worker}/environ").read_bytes()
    assert proc.RUN_TAG.encode() not in environ and b"AWS_" not in environ
    # It listens where only its user can go.
    folder = Path(proc.scratch_root()) / f"runbook-warm-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_another_ansible_configuration_gets_a_worker_of_its_own(
        write_runbook, runbook_cli, kept, monkeypatch):
    path = report_book(write_runbook, "book", "one")
    first = int(outputs(runbook_cli, path)["pid"])
    monkeypatch.setenv("ANSIBLE_FORKS", "3")  # ansible-core reads it as it loads
    second = int(outputs(runbook_cli, path)["pid"])
    assert first and second and first != second
    assert sorted(kept_workers()) == sorted([first, second])
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", "0")
    own = outputs(runbook_cli, path)
    assert int(own["pid"]) == 0  # the run's own worker, ended with it


def test_sigkill_of_the_engine_ends_the_playbook_not_the_kept_worker_then_it_resumes(
        isolated, write_runbook, runbook_cli, kept):
    path, started, go, done = wait_for_go_book(isolated, write_runbook)
    engine = runbook_process("run", str(path))
    run_id = run_id_from(engine)
    wait_for(started, timeout=120)
    [worker] = kept_workers()
    deadline = time.monotonic() + 60
    while not any(b"AnsiballZ_wait_for" in b" ".join(cmdline(p))
                  for p in descendants(worker)):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    playbook = descendants(worker)
    engine.send_signal(signal.SIGKILL)
    engine.communicate(timeout=10)
    deadline = time.monotonic() + 30
    while alive := [p for p in playbook if pid_alive(p)]:
        assert time.monotonic() < deadline, f"still running: {alive}"
        time.sleep(0.05)
    assert pid_alive(worker) and not [p for p in descendants(worker) if pid_alive(p)]
    go.touch()
    assert not done.exists()
    resumed = runbook_cli("resume", run_id)
    assert resumed.code == 0, resumed.out
    assert done.read_text() == "done\n"
    assert kept_workers() == [worker]


def test_ctrl_c_ends_the_playbook_at_once_and_leaves_the_worker(isolated, write_runbook, kept):
    path, started, go, done = wait_for_go_book(isolated, write_runbook)
    engine = runbook_process("run", str(path))
    run_id_from(engine)
    wait_for(started, timeout=120)
    [worker] = kept_workers()
    playbook = descendants(worker)
    assert playbook
    engine.send_signal(signal.SIGINT)
    out, _ = engine.communicate(timeout=60)
    assert engine.returncode == 130, out
    assert [p for p in playbook if pid_alive(p)] == []  # ended before the engine exited
    assert pid_alive(worker)
    go.touch()
    assert not done.exists()


KILL_KEPT = "\n" + FIND_KEPT.replace("echo $found", 'kill -9 "$found"') + "\n"


def test_a_kept_worker_that_dies_fails_only_its_attempt_and_the_next_starts_a_new_one(
        isolated, write_runbook, runbook_cli, kept):
    from tests.steps.test_ansible_warm import kill_once_book

    path, _ = kill_once_book(isolated, write_runbook, KILL_KEPT)
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    assert "attempt 1 failed: the Ansible worker ended during the playbook " \
        "(killed by SIGKILL)" in result.out
    assert "survived" in result.out
    assert len(kept_workers()) == 1  # the new one, kept for the next run


def test_an_idle_kept_worker_ends_and_takes_its_socket(write_runbook, runbook_cli, kept,
                                                      monkeypatch):
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", "1")
    worker = int(outputs(runbook_cli, report_book(write_runbook, "b", "one"))["pid"])
    assert worker
    place = Path(cmdline(worker)[4].decode())
    assert place.suffix == ".sock" and place.exists()
    deadline = time.monotonic() + 60
    while pid_alive(worker) and _is_kept(worker):
        assert time.monotonic() < deadline, "the idle worker stayed"
        time.sleep(0.1)
    assert not place.exists() and not place.with_suffix(".log").exists()
    assert not place.with_suffix("").exists()


def test_a_wrong_keep_warm_is_refused_before_the_run(write_runbook, runbook_cli, monkeypatch):
    monkeypatch.setenv("RUNBOOK_KEEP_WARM", "soon")
    path = report_book(write_runbook, "book", "one")
    done = runbook_cli("run", str(path))
    assert done.code == 2
    assert "RUNBOOK_KEEP_WARM is 'soon': the seconds the Ansible worker is kept warm" in done.err
    nothing_recorded(runbook_cli)
    assert kept_workers() == []


def test_a_socket_folder_others_can_enter_is_not_used(monkeypatch):
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # short enough for a socket's path
    monkeypatch.setattr(proc, "scratch_root", lambda: tmp_path)
    folder = tmp_path / f"runbook-warm-{os.getuid()}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert ansible_warm._kept_place({"PATH": "/bin"}, str(tmp_path)) is None
    folder.chmod(0o700)
    try:
        assert ansible_warm._kept_place({"PATH": "/bin"}, str(tmp_path)) is not None
    finally:
        shutil.rmtree(tmp_path)


def test_an_engine_gone_before_the_worker_answers_leaves_it_serving_the_others(
        tmp_path, kept):
    """A run that connects while the worker loads and ends before it is answered (its first
    step failed at once, say) is dropped: the worker goes on serving the engines after it."""
    from engine.steps import ansible as ansible_step
    from tests.steps.test_ansible_warm import run_step

    ansible_step._worker("gone-at-once")  # starts the worker and connects, as a run starts
    ansible_warm.close_all()  # and is gone before the worker, still loading, answers
    result = run_step(tmp_path, "after", "report-other.yml", {"y": "next"})
    assert result["outputs"]["y"] == "next"
    assert len(kept_workers()) == 1


def test_a_worker_that_ends_before_taking_the_request_says_nothing_ran(tmp_path):
    """A kept worker that ends at its idle time while an engine's connection waits in its
    backlog resets it: a worker death that says nothing of the request ran (NotTaken: the
    ansible step sends it once more, to the worker that takes its place), not an unexpected
    ConnectionResetError."""
    import socket
    import threading

    path = str(Path(tempfile.mkdtemp(dir="/tmp")) / "w.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    agent = ansible_warm.Agent("ends-idle", {}, sock, os.getpid(), tmp_path / "w.log", None)
    threading.Timer(0.5, listener.close).start()  # idle: it returns without accepting
    try:
        with pytest.raises(ansible_warm.NotTaken):
            agent.run(["ansible-playbook", "x.yml"], {}, str(tmp_path), "s", lambda _: None,
                      30)
    finally:
        shutil.rmtree(os.path.dirname(path))


def test_a_vault_password_file_setting_is_read_by_a_kept_worker(tmp_path, kept, monkeypatch):
    """ANSIBLE_VAULT_PASSWORD_FILE (and the other settings whose names say PASS or TOKEN but
    hold a path or a yes/no: ansible-core reads them as it loads) is a setting of the worker,
    as with a worker of the run's own or ansible-playbook."""
    import subprocess
    import sys

    from tests.steps.test_ansible_warm import run_step

    password = tmp_path / "vault-pass"
    password.write_text("hunter2hunter2\n")
    password.chmod(0o600)
    vault = Path(sys.executable).with_name("ansible-vault")
    vaulted = subprocess.run(
        [str(vault), "encrypt_string", "--vault-password-file", str(password),
         "the-secret-value", "--name", "secret"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "ANSIBLE_HOME": str(tmp_path / "vault-home")}).stdout
    playbook = tmp_path / "vaulted.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  vars:\n"
                        + "".join("    " + line + "\n" for line in vaulted.splitlines())
                        + "  tasks:\n    - ansible.builtin.set_stats:\n        per_host: false\n"
                        "        data: {length: '{{ secret | length }}'}\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
    result = run_step(tmp_path, "vaulted", str(playbook), {})
    assert int(result["outputs"]["length"]) == len("the-secret-value")


def test_a_kept_worker_this_engine_started_that_died_between_steps_is_replaced(tmp_path, kept):
    """The engine that started the kept worker is its parent: once killed between two
    steps, it is this engine's unreaped child, and the next step starts a new one instead of
    failing on it."""
    from tests.steps.test_ansible_warm import run_step

    run_step(tmp_path, "first", "report-other.yml", {"y": "one"})
    [agent] = ansible_warm._pool.workers.values()
    assert isinstance(agent, ansible_warm.Agent) and agent.started is not None
    os.kill(agent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{agent.pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert run_step(tmp_path, "second", "report-other.yml", {"y": "two"})["outputs"]["y"] \
        == "two"


def test_module_payloads_go_to_the_steps_own_folder_not_the_kept_workers_home(tmp_path, kept):
    """A module's payload holds its arguments: it is written in the step's scratch folder
    (removed when the step ends, or by the resume of a killed run), never in the kept
    worker's home, which outlives every run."""
    from tests.steps.test_ansible_warm import run_step

    playbook = tmp_path / "payload.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False, "tasks": [
            {"ansible.builtin.shell": "tr '\\0' ' ' < /proc/$PPID/cmdline", "register": "m"},
            {"ansible.builtin.set_stats": {"per_host": False,
                                           "data": {"module": "{{ m.stdout }}"}}}]}]))
    module = run_step(tmp_path, "payload", str(playbook), {})["outputs"]["module"]
    assert "AnsiballZ_command.py" in module
    scratch = str(proc.scratch_root() / proc.scratch_prefix("warm-test"))
    assert module.split()[-1].startswith(scratch), module


def test_workers_started_together_for_one_place_leave_exactly_one_listening(tmp_path):
    """Engines that find no worker start one each at the same moment: the lock beside the
    socket lets one listen there; the others say another one is there and end."""
    import subprocess
    import sys

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # short enough for a socket's path
    place = folder / "w.sock"
    starts = [subprocess.Popen([sys.executable, "-I", str(ansible_warm.HOST), "--serve",
                                str(place), "60", ""], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, cwd=folder, start_new_session=True,
                               env={"PATH": os.environ["PATH"],
                                    "ANSIBLE_HOME": str(folder / "home")})
              for _ in range(4)]
    try:
        said = {p: p.stdout.readline().decode().split()[0] for p in starts if p.stdout}
        assert sorted(said.values()) == ["exists", "exists", "exists", "listening"]
        for p, line in said.items():
            if line == "exists":
                assert p.wait(timeout=60) == 0
            else:
                assert p.poll() is None  # the one listening stays
    finally:
        for p in starts:
            proc.end_tree(p.pid)
            p.wait()
        shutil.rmtree(folder)


def test_each_playbook_makes_its_aws_session_from_its_own_environment(
        write_runbook, runbook_cli, kept, in_shared_sandbox, monkeypatch):
    """The kept worker has boto3's models loaded, not a session: the region (and credentials)
    of a playbook's own environment are the ones its tasks use, run after run."""
    playbook = Path(__file__).resolve().parents[2] / "runbooks" / "playbooks" / \
        "read-ecr-image.yml"
    path = write_runbook(book(
        f"  - id: report\n    ansible:\n      playbook: {playbook}\n"
        "      extravars: {repository: quikapp/api, tag: live-1.4.0, missing_ok: false}\n"
        "      outputs: [repository, tag, found, digest]\n"))
    first = runbook_cli("run", str(path), "--output", "json")
    assert first.code == 0, first.out + first.err
    worker = kept_workers()
    assert len(worker) == 1
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # moto has no repository there
    elsewhere = runbook_cli("run", str(path))
    assert elsewhere.code == 1, elsewhere.out + elsewhere.err
    assert "image quikapp/api:live-1.4.0 not found in ECR" in elsewhere.out
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    again = runbook_cli("run", str(path), "--output", "json")
    assert again.code == 0, again.out + again.err
    assert kept_workers() == worker  # all three through the same worker
    digests = [{s["step_id"]: s for s in json.loads(r.out)["steps"]}["report"]["result"]
               ["outputs"]["digest"] for r in (first, again)]
    assert digests[0] == digests[1] and digests[0].startswith("sha256:")
