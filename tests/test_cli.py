import json
import subprocess
import sys

from tests.conftest import HEADER

HEAVY = ("boto3", "kubernetes", "ansible", "ansible_runner", "rich", "jinja2")


def imported_after(*args: str) -> set[str]:
    code = ("import sys; from engine import cli; code = cli.main(sys.argv[1:]);"
            " import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_help_imports_no_heavy_module():
    modules = imported_after("--help")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_validate_imports_neither_boto3_kubernetes_nor_ansible(write_runbook):
    path = write_runbook(HEADER + "steps: [{id: a, ansible: {playbook: x.yml}}]\n")
    modules = {m.split(".")[0] for m in imported_after("validate", str(path))}
    assert not modules & {"boto3", "kubernetes", "ansible", "ansible_runner"}


def test_python_dash_m_engine_works():
    proc = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "exit codes" in proc.stdout


def test_list_and_show(runbook_cli):
    listed = runbook_cli("list", "--output", "json").json()
    assert "demo" in [r["name"] for r in listed]
    shown = runbook_cli("show", "demo")
    assert shown.code == 0
    assert "--release" in shown.out and "required" in shown.out
    assert "sign-off" in shown.out


def test_run_help_shows_the_runbook_params(runbook_cli):
    result = runbook_cli("run", "demo", "--help")
    assert result.code == 0 and "--release" in result.out


def test_unknown_command_is_invalid_input(runbook_cli):
    result = runbook_cli("frobnicate")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1


def test_no_color_and_plain_output_when_not_a_tty(write_runbook, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    path = write_runbook(HEADER + "steps: [{id: a, command: {argv: [echo, hi]}}]\n")
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stdout
    assert "✓ a ok" in proc.stdout


def test_demo_runbook_end_to_end(runbook_cli, monkeypatch, isolated):
    first = runbook_cli("run", "demo", "--release", "r7", "--workdir", "demo-out")
    assert first.code == 3, first.out
    run_id = first.out.split()[1]
    assert runbook_cli("approve", run_id, "--step", "sign-off", "--by", "alice").code == 0
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert (isolated / "demo-out" / "r7.txt").read_text() == "release: r7\napproved by: alice\n"
