import json

from tests.helpers import append_step, book, lines

PARAMS = "params:\n  tag: {type: string, required: true}\n"


def test_plan_renders_steps_and_changes_nothing(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(
        append_step("first"),
        "  - id: peek\n    command: {argv: [echo, 'tag={{ params.tag }}'], check_mode: safe}\n"
        "    register: peek\n",
        "  - id: use\n    command: {argv: [echo, '{{ peek.stdout | trim }}']}\n",
        params=PARAMS))
    result = runbook_cli("plan", str(path), "--tag", "v1.2")
    assert result.code == 0, result.err
    assert "$ echo tag=v1.2" in result.out
    assert "$ echo tag=v1.2" in result.out.split("use")[-1]  # rendered with the safe result
    assert lines(isolated / "log.txt") == []  # the side-effect step did not run
    assert runbook_cli("status", "--output", "json").json() == []  # no run recorded


def test_dry_run_flag_is_the_same_as_plan(write_runbook, runbook_cli):
    path = write_runbook(book(append_step("a"), params=PARAMS))
    a = runbook_cli("plan", str(path), "--tag", "x", "--output", "json").json()
    b = runbook_cli("run", str(path), "--tag", "x", "--dry-run", "--output", "json").json()
    assert a == b


def test_plan_hash_is_stable_and_follows_inputs(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("a"), params=PARAMS))

    def plan_hash(*args: str) -> str:
        return runbook_cli("plan", str(path), *args, "--output", "json").json()["plan_hash"]

    first = plan_hash("--tag", "v1")
    assert plan_hash("--tag", "v1") == first
    assert plan_hash("--tag", "v2") != first
    path.write_text(path.read_text() + "\n# a comment changes the file\n")
    assert plan_hash("--tag", "v1") != first


def test_plan_markdown_is_a_change_record(write_runbook, runbook_cli):
    path = write_runbook(book(
        append_step("a"),
        "  - id: ok\n    approval: {prompt: 'CAB signs {{ params.tag }}'}\n",
        params=PARAMS))
    result = runbook_cli("plan", str(path), "--tag", "v9", "--output", "markdown")
    assert result.code == 0
    out = result.out
    assert out.startswith("# Change plan: `book`")
    assert "**Plan hash:**" in out
    assert "| 2 | `ok` ok | approval | stops until approved: CAB signs v9 |" in out


def test_undefined_name_stops_everything_before_the_first_step(write_runbook, runbook_cli,
                                                              isolated):
    path = write_runbook(book(
        append_step("first"),
        "  - id: bad\n    command: {argv: [echo, '{{ params.nope }}']}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 2
    assert f"{path}:8: at $.steps[bad].command.argv[1]:" in result.err
    assert "'dict object' has no attribute 'nope'" in result.err
    assert lines(isolated / "log.txt") == []
    assert runbook_cli("status", "--output", "json").json() == []


def test_sandbox_escape_stops_everything(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(
        append_step("first"),
        "  - id: bad\n    command: {argv: [echo, \"{{ ''.__class__.__mro__ }}\"]}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 2
    assert "unsafe" in result.err
    assert lines(isolated / "log.txt") == []


def test_templates_needing_a_later_result_are_checked_when_they_can_be(write_runbook,
                                                                      runbook_cli):
    # Uses a registered result (deferred) but also an undefined name: caught at run time,
    # as a failed step with the reason.
    path = write_runbook(book(
        "  - id: a\n    command: {argv: [echo, hi]}\n    register: a\n",
        "  - id: b\n    command: {argv: [echo, '{{ a.stdout }}{{ nope }}']}\n"))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    assert "'nope' is undefined" in result.out


def test_json_plan_lists_when_and_deferred(write_runbook, runbook_cli):
    path = write_runbook(book(
        "  - id: a\n    command: {argv: [echo, hi]}\n    register: a\n",
        "  - id: b\n    when: \"a.rc == 0\"\n    command: {argv: [echo, '{{ a.stdout }}']}\n",
        "  - id: c\n    when: false\n    command: {argv: [echo]}\n"))
    data = runbook_cli("plan", str(path), "--output", "json").json()
    steps = {s["id"]: s for s in data["steps"]}
    assert steps["a"]["rendered"] == {"argv": ["echo", "hi"]}
    assert steps["b"]["when"] is None and steps["b"]["deferred_on"] == "a"
    assert steps["c"]["when"] is False
    assert json.dumps(data)  # JSON-native
