"""The sandbox's Prometheus: started with the sandbox when installed, scraping each emulated
deployment's metrics endpoint, stopped with it."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from engine.sandbox import prometheus
from engine.store.owner import pid_alive

pytestmark = pytest.mark.skipif(
    prometheus.binary() is None,
    reason="prometheus is not installed (apt-get install prometheus): the sandbox runs none")

ENVS = {"dev", "qa", "uat1", "uat2", "uat3", "staging", "live"}


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def counters(page: str) -> dict[str, float]:
    """The http_requests_total samples of a metrics page, by status code."""
    out = {}
    for line in page.splitlines():
        if line.startswith("http_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('code="')[1].split('"')[0]] = float(value)
    return out


def until(what, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Poll ``what`` until it returns something true: Prometheus scrapes in its own time."""
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "Prometheus never got there"
        time.sleep(0.2)
    return found


def test_each_deployment_serves_metrics_that_grow_with_each_scrape(in_shared_sandbox):
    url = f"{in_shared_sandbox['kube_url']}/sandbox/metrics/quikapp-staging/staging-quikapp-api"
    first, second = counters(get(url)), counters(get(url))
    assert second["200"] >= first["200"] + 10  # ten more requests at least (Prometheus too)
    assert second["500"] == first["500"] == 0 and second["503"] == 0
    page = get(url)
    assert 'image="123456789012.dkr.ecr.us-east-1.amazonaws.com/quikapp/api:staging-1.4.1"' \
        in page
    assert "# TYPE http_request_duration_seconds histogram" in page


def test_prometheus_scrapes_every_environment_and_answers_queries(in_shared_sandbox,
                                                                   runbook_cli):
    base = in_shared_sandbox["prometheus_url"]
    assert base.startswith("http://127.0.0.1:")

    def targets_up():  # type: ignore[no-untyped-def]
        active = json.loads(get(f"{base}/api/v1/targets"))["data"]["activeTargets"]
        up = {t["labels"]["env"] for t in active if t["health"] == "up"}
        return up if up == ENVS else None

    assert until(targets_up) == ENVS
    query = 'sum by (env) (http_requests_total{code="200"})'

    def answer():  # type: ignore[no-untyped-def]
        found = json.loads(get(f"{base}/api/v1/query?"
                               + urllib.parse.urlencode({"query": query})))
        values = {r["metric"]["env"]: float(r["value"][1]) for r in found["data"]["result"]}
        return values if set(values) == ENVS else None

    assert all(v > 0 for v in until(answer).values())
    where = str(Path(in_shared_sandbox["inventory"]).parent)
    assert f"export PROMETHEUS_URL={base}" in runbook_cli("sandbox", "env", "--dir", where).out
    status = runbook_cli("sandbox", "status", "--dir", where, "--output", "json").json()
    assert status["prometheus_url"] == base


def test_sandbox_down_stops_its_prometheus(tmp_path, runbook_cli):
    where = str(tmp_path / "sb")
    assert runbook_cli("sandbox", "up", "--dir", where, "--rollout-delay", "0.2").code == 0
    status = runbook_cli("sandbox", "status", "--dir", where, "--output", "json").json()
    try:
        assert get(f"{status['prometheus_url']}/-/ready").startswith("Prometheus")
        assert (tmp_path / "sb" / "prometheus" / "prometheus.yml").exists()
        inventory = (tmp_path / "sb" / "quikapp.yaml").read_text()
        assert f"prometheus: {status['prometheus_url']}" in inventory
    finally:
        assert runbook_cli("sandbox", "down", "--dir", where).code == 0
    assert not pid_alive(int(status["prometheus_pid"]))
