"""The analysis check of a checklist: PromQL queries measured against the sandbox's real
Prometheus, each value and its time kept as the item's evidence."""

from __future__ import annotations

import pytest

from engine.sandbox import prometheus
from tests.world import image

pytestmark = pytest.mark.skipif(
    prometheus.binary() is None,
    reason="prometheus is not installed (apt-get install prometheus): the sandbox runs none")

SELECTOR = 'env="{{ args.env }}",image="{{ args.image }}"'
INVENTORY = """\
apiVersion: runbook/v1
kind: Inventory
metadata: {{name: team}}
people: {{tester: {{roles: [release]}}}}
monitoring:
  prometheus: {url}
  analyses:
    health:
      metrics:
        - name: error-ratio
          query: >-
            sum(rate(http_requests_total{{{selector},code=~"5.."}}[1m]))
            / sum(rate(http_requests_total{{{selector}}}[1m]))
          successCondition: "result < 0.01"
          interval: 0.5
          count: 2
          consecutiveErrorLimit: 60
    quiet:
      metrics:
        - name: request-rate
          query: 'sum(rate(http_requests_total{{{selector}}}[1m]))'
          successCondition: "{condition}"
          interval: 0.5
          count: 3
          failureLimit: 1
          consecutiveErrorLimit: 60
    nothing:
      metrics:
        - name: no-such-series
          query: 'sum(rate(http_requests_total{{env="nowhere"}}[1m]))'
          successCondition: "result < 1"
          interval: 0.2
          count: 1
          consecutiveErrorLimit: 1
checklists:
  go-live:
    - id: monitored
      text: "Monitoring verified"
      check: {{analysis: {{template: {template}, env: staging}}}}
"""
BOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: book}
steps:
  - id: checklist
    approval:
      prompt: go
      items: "{{ inventory.checklists['go-live'] }}"
      running:
        - env: staging
          image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/quikapp/api:staging-1.4.1"
"""


@pytest.fixture
def checklist(in_shared_sandbox, isolated, write_runbook, monkeypatch):  # type: ignore[no-untyped-def]
    """A runbook whose checklist's one item is an analysis ``template`` of staging."""

    def write(template: str, condition: str = "result < 1") -> str:
        inventory = isolated / "team.yaml"
        inventory.write_text(INVENTORY.format(url=in_shared_sandbox["prometheus_url"],
                                              selector=SELECTOR, template=template,
                                              condition=condition))
        monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
        return str(write_runbook(BOOK))

    return write


def evidence(runbook_cli, run_id: str) -> dict:
    steps = runbook_cli("status", run_id, "--output", "json").json()["steps"]
    return next(s for s in steps if s["step_id"] == "checklist")["result"]["items"]["monitored"]


def run_id_in(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("run "))


def test_a_healthy_environment_passes_with_each_value_and_its_time_as_evidence(
        checklist, runbook_cli):
    book = checklist("health")
    plan = runbook_cli("plan", book)
    assert plan.code == 0, plan.out + plan.err
    assert "measured when the run reaches this step" in plan.out
    done = runbook_cli("run", book)
    assert done.code == 0, done.out + done.err
    item = evidence(runbook_cli, run_id_in(done.out))
    assert item["passed"] is True
    analysis = item["analysis"]
    assert analysis["args"] == {"env": "staging", "image": image("staging-1.4.1")}
    (metric,) = analysis["metrics"]
    assert metric["phase"] == "successful"
    assert f'image="{image("staging-1.4.1")}"' in metric["query"]
    measured = [m for m in metric["measurements"] if m["phase"] != "error"]
    assert [(m["value"], m["phase"]) for m in measured] == [(0.0, "successful")] * 2
    assert all(m["at"] for m in measured)


def test_more_failures_than_the_limit_fail_the_check_with_the_values_seen(
        checklist, runbook_cli):
    # Staging serves requests all the time: a negative rate never holds.
    book = checklist("quiet", "result < 0")
    failed = runbook_cli("run", book)
    assert failed.code == 1, failed.out + failed.err
    assert "request-rate failed: 2 of 2 measurements failed result < 0 (failure limit 1)" \
        in failed.out
    item = evidence(runbook_cli, run_id_in(failed.out))
    assert item["passed"] is False
    (metric,) = item["analysis"]["metrics"]
    values = [m["value"] for m in metric["measurements"] if m["phase"] == "failed"]
    assert len(values) == 2 and all(v > 0 for v in values)


def test_a_query_without_data_errs_after_its_consecutive_error_limit(checklist, runbook_cli):
    failed = runbook_cli("run", checklist("nothing"))
    assert failed.code == 1, failed.out + failed.err
    assert "no-such-series no answer 2 times in a row: no data" in failed.out


def test_an_unknown_template_or_a_bad_condition_is_refused_with_its_line(
        checklist, runbook_cli):
    book = checklist("absent")
    refused = runbook_cli("run", book)
    assert refused.code == 2
    line = next(i for i, text in enumerate(INVENTORY.splitlines(), 1)
                if "template: {template}" in text)
    assert f"team.yaml:{line}: " in refused.err, refused.err
    assert "no analysis template 'absent'" in refused.err
    assert runbook_cli("status", "--output", "json").json() == []
    book = checklist("quiet", "result <")  # not an expression
    refused = runbook_cli("run", book)
    assert refused.code == 2 and "successCondition 'result <' is not a valid" in refused.err
