import re

from tests.helpers import APPEND, append_step, book, lines


def run_id_of(out: str) -> str:
    match = re.match(r"(?:run|resuming run) (\S+) ", out)
    assert match, out
    return match.group(1)


def test_run_prints_its_id_first_and_runs_each_step_once(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("a"), append_step("b"), append_step("c")))
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out
    first = result.out.splitlines()[0]
    assert re.fullmatch(r"run \d{8}-\d{6}-[0-9a-f]{6} \(runbook book\)", first)
    assert lines(isolated / "log.txt") == ["a", "b", "c"]
    detail = runbook_cli("status", run_id_of(result.out), "--output", "json").json()
    assert detail["run"]["status"] == "done"
    assert [(s["step_id"], s["status"], s["attempts"]) for s in detail["steps"]] == [
        ("a", "ok", 1), ("b", "ok", 1), ("c", "ok", 1)]
    assert all(s["fingerprint"] and s["ended_at"] for s in detail["steps"])


def test_failed_step_runs_its_on_failure_steps_and_exits_1(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(
        append_step("a"),
        "  - id: boom\n    command: {argv: [python3, -c, 'import sys; sys.exit(3)']}\n"
        "    on_failure:\n" + append_step("cleanup").replace("  - id", "      - id", 1)
        .replace("\n    command", "\n        command"),
        append_step("never")))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    assert "boom failed" in result.out
    assert "python3 -c 'import sys; sys.exit(3)' exited with 3 in " in result.out
    assert lines(isolated / "log.txt") == ["a", "cleanup"]
    assert "resume with: runbook resume" in result.out


def test_resume_after_failure_reruns_only_the_failed_step(write_runbook, runbook_cli, isolated):
    gate = isolated / "gate"
    path = write_runbook(book(
        append_step("a"),
        f"  - id: needs-gate\n    command: {{argv: [test, -e, {gate}]}}\n",
        append_step("b")))
    first = runbook_cli("run", str(path))
    assert first.code == 1
    gate.write_text("")
    again = runbook_cli("resume", run_id_of(first.out))
    assert again.code == 0, again.out
    assert "a done: done in an earlier attempt of this run" in again.out
    assert lines(isolated / "log.txt") == ["a", "b"]
    detail = runbook_cli("status", run_id_of(first.out), "--output", "json").json()
    assert {s["step_id"]: s["attempts"] for s in detail["steps"]}["needs-gate"] == 2
    assert runbook_cli("resume", run_id_of(first.out)).code == 2  # done runs stay done


def test_retries_then_success(write_runbook, runbook_cli, isolated):
    flaky = ("import pathlib,sys; p=pathlib.Path('n'); n=int(p.read_text() or 0) if p.exists() "
             "else 0; p.write_text(str(n+1)); sys.exit(0 if n >= 2 else 1)")
    path = write_runbook(book(
        "  - id: flaky\n    retries: 2\n    delay: 0\n"
        f"    command: {{argv: [python3, -c, \"{flaky}\"]}}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 0
    step = result.json()["steps"][0]
    assert (step["status"], step["attempts"]) == ("ok", 3)


def test_retries_exhausted_fails(write_runbook, runbook_cli):
    path = write_runbook(book(
        "  - id: never\n    retries: 1\n    delay: 0\n    command: {argv: ['false']}\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    assert result.code == 1
    assert result.json()["steps"][0]["attempts"] == 2


def test_when_register_set_and_assert(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(
        "  - id: read\n    command: {argv: [echo, '41']}\n    register: read\n",
        "  - id: skip-me\n    when: \"read.stdout | int > 100\"\n    command: {argv: ['false']}\n"
        "    register: skipped\n",
        "  - id: remember\n    set: {answer: \"{{ read.stdout | int + 1 }}\"}\n",
        "  - id: check\n    assert:\n      that: [\"facts.answer == 42\", \"skipped.skipped\"]\n",
        "  - id: wrong\n    assert:\n      that: [\"facts.answer == 41\"]\n"
        "      message: \"expected 41, got {{ facts.answer }}\"\n"))
    result = runbook_cli("run", str(path), "--output", "json")
    data = result.json()
    statuses = {s["step_id"]: s["status"] for s in data["steps"]}
    assert statuses == {"read": "ok", "skip-me": "skipped", "remember": "ok", "check": "ok",
                        "wrong": "failed"}
    assert data["steps"][-1]["message"] == "expected 41, got 42"
    assert result.code == 1


APPROVAL = book(append_step("before"),
                "  - id: sign-off\n    approval: {prompt: 'ship it?'}\n    register: sign\n",
                "  - id: after\n    command: {argv: [python3, -c, \"" + APPEND +
                "\", log.txt, 'after {{ sign.by }}']}\n")


def test_approval_stops_with_3_until_another_person_approves(write_runbook, runbook_cli,
                                                             isolated):
    path = write_runbook(APPROVAL)
    first = runbook_cli("run", str(path))
    assert first.code == 3
    run_id = run_id_of(first.out)
    assert f"runbook approve {run_id} --step sign-off" in first.out
    assert runbook_cli("resume", run_id).code == 3  # still waiting
    own = runbook_cli("approve", run_id, "--step", "sign-off", "--by", "tester")
    assert own.code == 2 and "cannot approve" in own.err
    wrong = runbook_cli("approve", run_id, "--step", "before", "--by", "alice")
    assert wrong.code == 2 and "no approval step 'before'" in wrong.err
    ok = runbook_cli("approve", run_id, "--step", "sign-off", "--by", "alice", "--note", "CHG-1")
    assert ok.code == 0
    done = runbook_cli("resume", run_id)
    assert done.code == 0, done.out
    assert lines(isolated / "log.txt") == ["before", "after alice"]
    detail = runbook_cli("status", run_id, "--output", "json").json()
    assert detail["approvals"][0]["by"] == "alice" and detail["approvals"][0]["note"] == "CHG-1"


def test_abort_ends_a_waiting_run(write_runbook, runbook_cli):
    path = write_runbook(APPROVAL)
    run_id = run_id_of(runbook_cli("run", str(path)).out)
    assert runbook_cli("abort", run_id).code == 0
    assert runbook_cli("status", run_id, "--output", "json").json()["run"]["status"] == "aborted"
    refused = runbook_cli("resume", run_id)
    assert refused.code == 2 and "aborted" in refused.err


def test_resume_refuses_a_changed_runbook_unless_forced(write_runbook, runbook_cli, isolated):
    path = write_runbook(APPROVAL)
    run_id = run_id_of(runbook_cli("run", str(path)).out)
    runbook_cli("approve", run_id, "--step", "sign-off", "--by", "alice")
    path.write_text(path.read_text().replace("'after", "'later"))
    refused = runbook_cli("resume", run_id)
    assert refused.code == 2
    assert "the runbook changed since run" in refused.err and "--force" in refused.err
    forced = runbook_cli("resume", run_id, "--force")
    assert forced.code == 0
    assert lines(isolated / "log.txt") == ["before", "later alice"]
    events = runbook_cli("status", run_id, "--output", "json").json()["events"]
    assert [e["kind"] for e in events if e["kind"] == "force-resume"] == ["force-resume"]
    assert events[0]["detail"]["by"] == "tester"


def test_a_changed_step_is_not_mistaken_for_a_done_one(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("a"),
                              "  - id: stop\n    approval: {prompt: wait}\n"))
    run_id = run_id_of(runbook_cli("run", str(path)).out)
    path.write_text(path.read_text().replace(", a]}", ", a2]}"))
    runbook_cli("approve", run_id, "--step", "stop", "--by", "alice")
    assert runbook_cli("resume", run_id, "--force").code == 0
    assert lines(isolated / "log.txt") == ["a", "a2"]


def test_status_lists_recent_runs_newest_first(write_runbook, runbook_cli):
    path = write_runbook(book(append_step("a")))
    ids = [run_id_of(runbook_cli("run", str(path)).out) for _ in range(3)]
    listed = [r["id"] for r in runbook_cli("status", "--output", "json").json()]
    assert listed == list(reversed(ids))
    assert runbook_cli("status", "no-such-run").code == 2


def test_output_json_on_errors(runbook_cli):
    result = runbook_cli("status", "nope", "--output", "json")
    assert result.code == 2
    assert result.json() == {"error": "no run with id 'nope'", "exit_code": 2}
