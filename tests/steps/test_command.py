import shlex

from engine import api
from tests.helpers import append_step, book, lines


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


def test_timeout_fails_the_step(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(
        "  - id: slow\n    command: {argv: [sleep, '5'], timeout: 0.3}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 1
    assert result.json()["steps"][0]["message"] == f"timed out after 0.3 s: sleep 5 in {isolated}"


def test_missing_program_is_refused_before_anything_runs(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(*[append_step("first")],
                              "  - id: x\n    command: {argv: [no-such-program-here]}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 2
    assert result.err.strip() == (f"runbook: error: {path}:8: step x cannot run: "
                                  "no-such-program-here is not installed (not found on PATH)")
    assert lines(isolated / "log.txt") == []  # nothing ran
    assert runbook_cli("status").out.strip() == "no runs yet"


def test_missing_folder_is_refused_before_anything_runs(write_runbook, runbook_cli, isolated):
    path = write_runbook(book("  - id: x\n    command: {argv: [ls], cwd: gone}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 2
    assert f"step x cannot run: its folder {isolated / 'gone'} does not exist" in result.err


def test_a_failed_command_says_what_ran_where_and_how_it_ended(write_runbook, runbook_cli,
                                                               isolated, monkeypatch):
    monkeypatch.setenv("APP_DB_PASSWORD", "hunter2-very-secret")
    (isolated / "app").mkdir()
    code = ("import sys; print(*range(15), sep=chr(10));"
            " print(sys.argv[1], file=sys.stderr); sys.exit(3)")
    path = write_runbook(book(
        "  - id: migrate\n    command:\n"
        f"      argv: [python3, -c, \"{code}\", \"{{{{ secret_env('APP_DB_PASSWORD') }}}}\"]\n"
        "      cwd: app\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    message = (f"python3 -c {shlex.quote(code)} *** exited with 3 in {isolated / 'app'}; "
               "its last 10 lines:\n" + "".join(f"    {i}\n" for i in range(6, 15)) + "    ***")
    assert "✗ migrate failed in " in result.out and message in result.out
    assert "hunter2" not in result.out + result.err
    shown = runbook_cli("status", "--output", "json").json()
    run_id = shown[0]["id"]
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert "hunter2" not in str(detail)


def test_a_failed_command_that_printed_nothing_says_so(write_runbook, runbook_cli, isolated):
    path = write_runbook(book("  - id: quiet\n    command: {argv: [python3, -c, 'exit(254)']}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 1
    assert result.json()["steps"][0]["message"] == (
        f"python3 -c 'exit(254)' exited with 254 in {isolated}; it printed nothing")


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
