"""The analysis check's overhead per query: one measurement of engine/steps/monitoring.py (render
the query, ask Prometheus over HTTP, parse, evaluate the successCondition in the Jinja2 sandbox)
against the bare HTTP request to Prometheus's /api/v1/query with the same PromQL (the
baseline), on the sandbox's real Prometheus.

    uv run python bench/analysis.py [--queries 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from engine import sandbox
from engine.sandbox import prometheus
from engine.steps import monitoring as analysis

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/quikapp/api:staging-1.4.1"
METRIC = {"name": "error-ratio",
          "query": 'sum(rate(http_requests_total{env="{{ args.env }}",image="{{ args.image }}",'
                   'code=~"5.."}[1m])) / sum(rate(http_requests_total{env="{{ args.env }}",'
                   'image="{{ args.image }}"}[1m]))',
          "successCondition": "result < 0.01", "interval": 1, "count": 1}


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def shown(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.2f} ms, p95 {sorted(ms)[int(len(ms) * 0.95)]:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if prometheus.binary() is None:
        print("prometheus is not installed (apt-get install prometheus)", file=sys.stderr)
        return 1
    where = Path(tempfile.mkdtemp(prefix="runbook-bench-")) / "sandbox"
    info = sandbox.up(where, rollout_delay=0.3)
    try:
        url = info["prometheus_url"]
        (metric,) = analysis.metrics({"metrics": [METRIC]},
                                     {"env": "staging", "image": IMAGE}, {})
        query = analysis.prometheus(url)
        while True:  # until Prometheus has two samples of staging: the query has a value
            taken = analysis.measure(metric, query, lambda: datetime.now(UTC))
            if taken["phase"] != "error":
                break
            time.sleep(0.2)
        bare = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": metric.query})

        def baseline() -> None:
            with urllib.request.urlopen(bare, timeout=10) as resp:
                resp.read()

        def one() -> None:
            analysis.measure(metric, query, lambda: datetime.now(UTC))

        def rendered_and_measured() -> None:
            (again,) = analysis.metrics({"metrics": [METRIC]},
                                        {"env": "staging", "image": IMAGE}, {})
            analysis.measure(again, query, lambda: datetime.now(UTC))

        timed(baseline, 20)  # warm both paths
        timed(one, 20)
        base = timed(baseline, args.queries)
        measured = timed(one, args.queries)
        full = timed(rendered_and_measured, args.queries)
        overhead = statistics.median(measured) - statistics.median(base)
        print(f"| measure ({args.queries} queries, the sandbox's Prometheus) | result |")
        print("|---|---|")
        print(f"| bare GET /api/v1/query (baseline) | {shown(base)} |")
        print(f"| analysis measurement (POST, parse, successCondition) | {shown(measured)} |")
        print(f"| the same with the query rendered each time | {shown(full)} |")
        print(f"| overhead per query (median) | {overhead:.2f} ms = "
              f"{statistics.median(measured) / statistics.median(base):.2f}× baseline |")
    finally:
        sandbox.down(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
