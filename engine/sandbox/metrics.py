"""The emulated services' traffic, as Prometheus scrapes it: each scrape of a deployment's
metrics endpoint (``/sandbox/metrics/NAMESPACE/DEPLOYMENT``) counts ten more requests served
by the image it runs, in Prometheus's text format (none while a rollout is under way: the
previous release still answers). A rolled-out release whose deployment is not available
answers them all with 503; an image whose tag holds ``errors`` (``1.4.5-errors``)
stays available, so its health URL answers 200, but answers three in ten with 500, slowly:
only monitoring sees it. A healthy release answers all ten with 200, fast."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

REQUESTS_PER_SCRAPE = 10
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0)
FAST, SLOW = 0.04, 0.45  # seconds a request takes: a healthy answer, an erroring release's 500


class _Series:
    """One image's counters in one deployment."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {"200": 0, "500": 0, "503": 0}
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def serve(self, code: str, seconds: float, requests: int) -> None:
        self.codes[code] += requests
        self.count += requests
        self.sum += seconds * requests
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += requests


class Traffic:
    """Every deployment's counters since the sandbox started: they only grow, as a real
    service's do until it restarts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}

    def scrape(self, deployment: Mapping[str, Any]) -> str:
        """Count the requests served since the last scrape; the metrics page."""
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        image = str(spec["template"]["spec"]["containers"][0].get("image") or "")
        want = spec.get("replicas", 1)
        status = deployment.get("status") or {}
        available = status.get("availableReplicas") == want
        # While a rollout is under way the previous release's pods still answer: the new
        # image serves nothing yet, neither successes nor errors.
        rolling = status.get("observedGeneration") != meta.get("generation")
        key = (str(meta.get("namespace", "")), str(meta["name"]), image)
        with self._lock:
            series = self._series.setdefault(key, _Series())
            if not rolling and not available:
                series.serve("503", 0.001, REQUESTS_PER_SCRAPE)
            elif not rolling and "errors" in image.rsplit(":", 1)[-1]:
                series.serve("200", FAST, REQUESTS_PER_SCRAPE - 3)
                series.serve("500", SLOW, 3)
            elif not rolling:
                series.serve("200", FAST, REQUESTS_PER_SCRAPE)
            return _page(image, series)


def _page(image: str, series: _Series) -> str:
    label = f'image="{_escape(image)}"'
    lines = ["# HELP http_requests_total Requests served, by status code.",
             "# TYPE http_requests_total counter"]
    lines += [f'http_requests_total{{{label},code="{code}"}} {count}'
              for code, count in sorted(series.codes.items())]
    lines += ["# HELP http_request_duration_seconds Time taken to answer a request.",
              "# TYPE http_request_duration_seconds histogram"]
    lines += [f'http_request_duration_seconds_bucket{{{label},le="{bound}"}} {count}'
              for bound, count in zip(BUCKETS, series.buckets, strict=True)]
    lines += [f'http_request_duration_seconds_bucket{{{label},le="+Inf"}} {series.count}',
              f"http_request_duration_seconds_sum{{{label}}} {series.sum:.3f}",
              f"http_request_duration_seconds_count{{{label}}} {series.count}"]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
