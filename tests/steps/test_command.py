from engine import api
from tests.helpers import book, lines


def test_arguments_are_never_run_through_a_shell(write_runbook, runbook_cli, isolated):
    path = write_runbook(book("  - id: echo\n    command: {argv: [echo, '{{ params.msg }}']}\n",
                              params="params:\n  msg: {type: string}\n"))
    result = runbook_cli("run", str(path), "--msg", "hi; touch pwned $(touch pwned2)",
                         "--output", "json")
    assert result.code == 0
    assert result.json()["steps"][0]["result"]["stdout"] == "hi; touch pwned $(touch pwned2)\n"
    assert not (isolated / "pwned").exists() and not (isolated / "pwned2").exists()


def test_cwd_env_stdin_and_captured_output(write_runbook, runbook_cli, isolated):
    (isolated / "sub").mkdir()
    code = ("import os,sys; print(os.getcwd()); print(os.environ['GREETING']);"
            " print(sys.stdin.read()); print('oops', file=sys.stderr)")
    path = write_runbook(book(
        f"  - id: c\n    command:\n      argv: [python3, -c, \"{code}\"]\n      cwd: sub\n"
        "      env: {GREETING: hello}\n      stdin: from stdin\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    res = result.json()["steps"][0]["result"]
    assert res["stdout_lines"] == [str(isolated / "sub"), "hello", "from stdin"]
    assert res["stderr"] == "oops\n" and res["rc"] == 0


def test_timeout_fails_the_step(write_runbook, runbook_cli):
    path = write_runbook(book(
        "  - id: slow\n    command: {argv: [sleep, '5'], timeout: 0.3}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 1
    assert result.json()["steps"][0]["message"] == "timed out after 0.3 s: sleep 5"


def test_missing_program_fails_clearly(write_runbook, runbook_cli):
    path = write_runbook(book("  - id: x\n    command: {argv: [no-such-program-here]}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 1
    assert "no-such-program-here exited with 127" in result.json()["steps"][0]["message"]


def test_output_is_streamed_to_the_console(write_runbook, runbook_cli):
    path = write_runbook(book("  - id: x\n    command: {argv: [printf, 'one\\ntwo\\n']}\n"))
    result = runbook_cli("run", str(path))
    assert "    one\n    two\n" in result.out


def test_only_safe_commands_run_in_a_plan(write_runbook, isolated):
    path = write_runbook(book(
        "  - id: safe\n    command: {argv: [touch, safe-ran], check_mode: safe}\n",
        "  - id: unsafe\n    command: {argv: [touch, unsafe-ran]}\n"))
    report = api.plan(runbook=str(path), params={})
    assert (isolated / "safe-ran").exists()
    assert not (isolated / "unsafe-ran").exists()
    assert [s.status for s in report.dry_run.steps] == ["checked", "would-run"]
    assert lines(isolated / "log.txt") == []
