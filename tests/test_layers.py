"""One place per concept at the CLI layer: statuses are enums with one table to exit codes.
(Which part may import which is import-linter's contract in pyproject.toml, run by CI.)"""

import json

from engine import errors
from engine.status import RunStatus, StepStatus
from tests.conftest import HEADER


def test_every_run_status_has_one_exit_code():
    assert set(errors.EXIT_CODES) == set(RunStatus)
    assert errors.exit_code("waiting") == errors.EXIT_WAITING == 3
    assert errors.exit_code(RunStatus.REFUSED) == errors.EXIT_INVALID


def test_run_results_carry_the_enum_and_json_the_text(write_runbook, runbook_cli):
    path = write_runbook(HEADER + "steps:\n  - id: ok\n    approval: {prompt: go}\n")
    result = runbook_cli("run", str(path), "--output", "json")
    data = json.loads(result.out)
    assert data["status"] == "waiting" and result.code == errors.EXIT_WAITING
    status = runbook_cli("status", data["run_id"], "--output", "json").json()
    assert status["steps"][0]["status"] == StepStatus.WAITING
