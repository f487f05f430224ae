"""Monitoring-based verification, as Argo Rollouts' AnalysisTemplate with its Prometheus
provider does it: each metric's PromQL query is measured ``count`` times, ``interval`` seconds
apart; a measurement passes when its ``successCondition`` (an expression over ``result``, such
as ``result < 0.01``) holds; a metric fails when more than ``failureLimit`` measurements fail,
or errs when more than ``consecutiveErrorLimit`` measurements in a row have no answer (no
data, an unreachable server, a condition that cannot be evaluated). Every value measured is
kept, with its time, as evidence.

The queries are templates rendered with ``args`` (the environment, the image it runs) and
the inventory; the conditions are evaluated by the engine's sandboxed Jinja2, never by Python.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import TemplateError

from engine.clock import Clock
from engine.errors import InvalidInput
from engine.language.render import condition, render_text, syntax_check

DEFAULT_INTERVAL = 30.0
DEFAULT_COUNT = 1
DEFAULT_CONSECUTIVE_ERRORS = 4
QUERY_TIMEOUT = 10.0


class NoAnswer(Exception):
    """A measurement without a value: Prometheus unreachable, an error, or no data."""


@dataclass(frozen=True)
class Metric:
    name: str
    query: str  # rendered
    success: str  # the successCondition
    interval: float
    count: int
    failure_limit: int
    error_limit: int


@dataclass
class _Progress:
    metric: Metric
    measurements: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    measured: int = 0  # passed or failed: what counts toward ``count``
    errors_in_a_row: int = 0
    next_at: float = 0.0

    @property
    def phase(self) -> str:
        if self.failed > self.metric.failure_limit:
            return "failed"
        if self.errors_in_a_row > self.metric.error_limit:
            return "error"
        return "successful" if self.measured >= self.metric.count else "running"


@dataclass(frozen=True)
class Result:
    passed: bool
    detail: str
    data: Mapping[str, Any]


def problems(inventory: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Where an inventory's monitoring cannot work, and why, found when it is loaded: a
    checklist item naming an analysis template it does not have, a condition or a query
    that is not a valid template."""
    monitoring = inventory.get("monitoring") or {}
    analyses = monitoring.get("analyses") or {}
    found: list[tuple[tuple[str | int, ...], str]] = []
    for name, spec in analyses.items():
        for i, metric in enumerate(spec["metrics"]):
            for key in ("query", "successCondition"):
                text = str(metric[key])
                try:
                    syntax_check(text if key == "query" else "{{ " + text + " }}")
                except TemplateError as err:
                    what = "template" if key == "query" else "expression"
                    found.append((("monitoring", "analyses", name, "metrics", i, key),
                                  f"{key} {text!r} is not a valid {what}: {err}"))
    for checklist, items in (inventory.get("checklists") or {}).items():
        for i, item in enumerate(items):
            wanted = ((item.get("check") or {}).get("analysis") or {}).get("template")
            if wanted is not None and wanted not in analyses:
                known = ", ".join(sorted(analyses)) or "none"
                found.append((("checklists", checklist, i, "check", "analysis", "template"),
                              f"no analysis template {wanted!r} under monitoring.analyses "
                              f"(it has: {known})"))
    return found


def template(monitoring: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The inventory's analysis template ``name``."""
    found = (monitoring.get("analyses") or {}).get(name)
    if found is None:
        known = ", ".join(sorted(monitoring.get("analyses") or {})) or "none"
        raise InvalidInput(f"the inventory has no analysis template {name!r} under "
                           f"monitoring.analyses (it has: {known})")
    return found  # type: ignore[no-any-return]


def metrics(spec: Mapping[str, Any], args: Mapping[str, Any],
            inventory: Mapping[str, Any]) -> list[Metric]:
    """A template's metrics, their queries rendered with ``args`` and the inventory."""
    context = {"args": dict(args), "inventory": inventory}
    out = []
    for i, raw in enumerate(spec["metrics"]):
        out.append(Metric(
            name=str(raw["name"]),
            query=render_text(str(raw["query"]), context, f"$.metrics[{i}].query"),
            success=str(raw["successCondition"]),
            interval=float(raw.get("interval", DEFAULT_INTERVAL)),
            count=int(raw.get("count", DEFAULT_COUNT)),
            failure_limit=int(raw.get("failureLimit", 0)),
            error_limit=int(raw.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERRORS))))
    return out


def prometheus(url: str) -> Callable[[str], list[float]]:
    """A query function for the Prometheus at ``url`` (its HTTP API, /api/v1/query): the
    values of the instant vector or scalar a query gives."""
    import urllib.error  # here: loading runbooks needs no HTTP client
    import urllib.parse
    import urllib.request

    endpoint = url.rstrip("/") + "/api/v1/query"

    def query(promql: str) -> list[float]:
        data = urllib.parse.urlencode({"query": promql}).encode()
        # The URL is the inventory's, http or https (its schema says so).
        request = urllib.request.Request(endpoint, data=data, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as resp:  # noqa: S310
                answer = json.load(resp)
        except urllib.error.HTTPError as err:
            try:
                message = json.load(err).get("error") or err.reason
            except ValueError:
                message = err.reason
            raise NoAnswer(f"Prometheus answered {err.code}: {message}") from err
        except (OSError, ValueError) as err:
            raise NoAnswer(f"Prometheus at {url} did not answer: {err}") from err
        result = answer.get("data") or {}
        if result.get("resultType") == "scalar":
            return [float(result["result"][1])]
        if result.get("resultType") != "vector":
            raise NoAnswer(f"the query gives a {result.get('resultType')}, not a vector")
        return [float(sample["value"][1]) for sample in result.get("result") or []]

    return query


def measure(metric: Metric, query: Callable[[str], list[float]],
            now: Callable[[], datetime]) -> dict[str, Any]:
    """One measurement: its time, value and phase (successful, failed or error)."""
    at = now().isoformat(timespec="seconds")
    try:
        values = query(metric.query)
        if not values:
            raise NoAnswer("no data: the query matched no series")
        if not all(math.isfinite(v) for v in values):
            raise NoAnswer(f"no number: the query gave {values}")
        result: float | list[float] = values[0] if len(values) == 1 else values
        ok = condition(metric.success, {"result": result}, f"{metric.name}.successCondition")
    except NoAnswer as err:
        return {"at": at, "value": None, "phase": "error", "message": str(err)}
    except InvalidInput as err:
        return {"at": at, "value": result, "phase": "error", "message": err.message}
    return {"at": at, "value": result, "phase": "successful" if ok else "failed"}


def run(metrics_: Sequence[Metric], query: Callable[[str], list[float]], *,
        now: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic) -> Result:
    """Measure every metric on its own interval until each has its count of measurements,
    or one fails or errs (which ends the analysis)."""
    progress = [_Progress(m) for m in metrics_]
    start = monotonic()
    for p in progress:
        p.next_at = start
    while True:
        running = [p for p in progress if p.phase == "running"]
        if not running or any(p.phase in ("failed", "error") for p in progress):
            break
        due = min(running, key=lambda p: p.next_at)
        wait = due.next_at - monotonic()
        if wait > 0:
            sleep(wait)
        taken = measure(due.metric, query, now)
        due.measurements.append(taken)
        due.next_at = monotonic() + due.metric.interval
        if taken["phase"] == "error":
            due.errors_in_a_row += 1
            continue
        due.errors_in_a_row = 0
        due.measured += 1
        due.failed += taken["phase"] == "failed"
    return _result(progress)


def _result(progress: Sequence[_Progress]) -> Result:
    parts = []
    for p in progress:
        m = p.metric
        done = [x for x in p.measurements if x["phase"] != "error"]
        last = p.measurements[-1] if p.measurements else None
        seen = f"last {_shown(last['value'])}" if last and last["value"] is not None else \
            (last["message"] if last else "not measured")
        if p.phase == "failed":
            what = f"failed: {p.failed} of {len(done)} measurements failed " \
                   f"{m.success} (failure limit {m.failure_limit}), {seen}"
        elif p.phase == "error":
            what = f"no answer {p.errors_in_a_row} times in a row: {seen}"
        elif p.phase == "running":
            what = f"stopped after {len(done)} of {m.count} measurements, {seen}"
        else:
            what = f"{len(done) - p.failed} of {m.count} measurements passed {m.success}" + \
                (f" ({p.failed} failed, limit {m.failure_limit})" if p.failed else "") + \
                f", {seen}"
        parts.append(f"{m.name} {what}")
    data = {"metrics": [{"name": p.metric.name, "query": p.metric.query,
                         "successCondition": p.metric.success, "phase": p.phase,
                         "count": p.metric.count, "interval": p.metric.interval,
                         "failureLimit": p.metric.failure_limit,
                         "measurements": p.measurements} for p in progress]}
    passed = all(p.phase == "successful" for p in progress)
    return Result(passed, "; ".join(parts), data)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return f"{value:.4g}"


def analyse(monitoring: Mapping[str, Any], name: str, args: Mapping[str, Any],
            inventory: Mapping[str, Any], *, clock: Clock,
            query: Callable[[str], list[float]] | None = None) -> Result:
    """Run the inventory's analysis template ``name`` against its Prometheus."""
    url = str(monitoring["prometheus"])
    found = run(metrics(template(monitoring, name), args, inventory),
                query or prometheus(url), now=clock.now, sleep=clock.sleep,
                monotonic=clock.monotonic)
    data = {"prometheus": url, "template": name, "args": dict(args), **found.data}
    return Result(found.passed, f"analysis {name} of {url}: {found.detail}", data)
