from engine import api
from tests.fakes import FakeClock
from tests.helpers import book


def test_wait_seconds_uses_the_clock(write_runbook):
    clock = FakeClock()
    path = write_runbook(book("  - id: w\n    wait: {seconds: 90}\n"))
    result = api.run(runbook=str(path), params={}, clock=clock)
    assert result.status == "done"
    assert clock.slept == [90.0]


def test_wait_until_polls_a_command_until_true(write_runbook, isolated):
    clock = FakeClock()
    counter = ("import pathlib; p=pathlib.Path('n'); n=int(p.read_text()) if p.exists() else 0;"
               " p.write_text(str(n+1)); print(n+1)")
    path = write_runbook(book(
        "  - id: w\n    wait:\n      until: \"poll.stdout | int >= 3\"\n      timeout: 60\n"
        f"      interval: 5\n      argv: [python3, -c, \"{counter}\"]\n    register: w\n"))
    result = api.run(runbook=str(path), params={}, clock=clock)
    assert result.status == "done"
    assert result.steps[0].result == {"polls": 3, "waited": 10.0,
                                      "poll": {"rc": 0, "stdout": "3\n", "stderr": ""}}
    assert clock.slept == [5.0, 5.0]


def test_wait_until_times_out(write_runbook):
    clock = FakeClock()
    path = write_runbook(book(
        "  - id: w\n    wait: {until: \"poll.rc == 0\", timeout: 30, interval: 10,"
        " argv: ['false']}\n"))
    result = api.run(runbook=str(path), params={}, clock=clock)
    assert result.status == "failed"
    assert "still not poll.rc == 0 after 30 s (4 polls)" in result.message
    assert sum(clock.slept) <= 30


def test_wait_needs_seconds_or_until_with_timeout(write_runbook, runbook_cli):
    path = write_runbook(book("  - id: w\n    wait: {until: 'true'}\n"))
    result = runbook_cli("validate", str(path))
    assert result.code == 2
    assert "wait needs either 'seconds', or 'until' with a 'timeout'" in result.err
