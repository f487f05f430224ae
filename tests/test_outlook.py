"""A failed run that cannot succeed says so and how to end it, instead of inviting a resume."""

from __future__ import annotations

from tests.helpers import append_step, book, lines

FINAL = ("  - id: verify\n    failure_is_final: true\n"
         "    command: {argv: [python3, -c, 'import sys; sys.exit(1)']}\n"
         "    on_failure:\n"
         + append_step("undo").replace("  - id", "      - id", 1)
         .replace("\n    command", "\n        command"))


def test_a_final_step_failed_and_undone_suggests_abort(write_runbook, runbook_cli, isolated):
    path = write_runbook(book(append_step("change"), FINAL, append_step("never")))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    run_id = result.out.split()[1]
    assert (f"run {run_id} cannot succeed: step verify failed and undo undid its change, so "
            f"resuming would only fail again; end it with: runbook abort {run_id}") in result.out
    assert "resume with" not in result.out
    assert lines(isolated / "log.txt") == ["change", "undo"]
    data = runbook_cli("resume", run_id, "--output", "json").json()
    assert data["exit_code"] == 1 and data["cannot_succeed"].startswith("step verify failed")


def test_a_final_step_whose_undo_failed_can_still_be_resumed(write_runbook, runbook_cli,
                                                             isolated):
    failing_undo = FINAL.replace(
        "\n        command: {argv: [python3, -c, \"import sys; open",
        "\n        command: {argv: [python3, -c, \"import sys; sys.exit(2); open")
    path = write_runbook(book(failing_undo))
    result = runbook_cli("run", str(path))
    assert result.code == 1
    assert "✗ undo failed" in result.out and lines(isolated / "log.txt") == []
    assert "cannot succeed" not in result.out
    assert "resume with: runbook resume" in result.out
