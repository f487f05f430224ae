"""A release's values shown by service: the values a runbook binds or records for each
service of a release (its tag, digest, the image it replaces) are mappings by service name;
these turn them into one row per service, for the plan, the board, the history and the
change record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def by_service(values: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(service → its values, the values that are not per service). A value per service is a
    mapping by name; ``changed`` (the services a release changes) becomes each service's
    ``changed``, true or false, when the others are per service."""
    per = {k: v for k, v in values.items() if isinstance(v, Mapping)}
    rest = {k: v for k, v in values.items() if k not in per}
    if not per:
        return {}, dict(values)
    names = list(dict.fromkeys(n for v in per.values() for n in v))
    rows = {str(n): {k: v.get(n) for k, v in per.items()} for n in names}
    changed = rest.pop("changed", None) if isinstance(rest.get("changed"), list) else None
    if changed is not None:
        for name, row in rows.items():
            row["changed"] = name in changed
    rest.pop("services", None)
    return rows, rest


def state(row: Mapping[str, Any]) -> str:
    """changes, unchanged, or '' when the row does not say."""
    if "changed" not in row:
        return ""
    return "changes" if row["changed"] else "unchanged"


def images(value: Any) -> str:
    """What an environment runs, as a line: of a release, each service's image."""
    if isinstance(value, Mapping):
        return ", ".join(f"{name} {image}" for name, image in value.items())
    return str(value)


def changes(journal: Iterable[Any]) -> list[tuple[str, str, dict[str, dict[str, Any]],
                                                 dict[str, Any]]]:
    """The environment changes a run's journal records (its history records): (kind, env,
    each service's values, the values not per service)."""
    found = []
    for record in journal:
        if record.kind != "history" or not isinstance(record.data.get("data"), Mapping):
            continue
        rows, rest = by_service(record.data["data"])
        found.append((str(record.data.get("kind")), str(record.data.get("env")), rows, rest))
    return found


def table(rows: Mapping[str, Mapping[str, Any]]
          ) -> tuple[list[str], list[tuple[str, str, list[Any]]]]:
    """The columns of a per-service table (the values' names, ``changed`` shown apart) and
    each service's row: (name, changes/unchanged/'', its values in the columns' order)."""
    if not rows:
        return [], []
    keys = [k for k in next(iter(rows.values())) if k != "changed"]
    return keys, [(name, state(row), [row.get(k) for k in keys]) for name, row in rows.items()]


def markdown(rows: Mapping[str, Mapping[str, Any]], cell: Any) -> list[str]:
    """A per-service table in markdown (``cell`` escapes a value for a cell)."""
    keys, lines = table(rows)
    if not keys:
        return []
    return ["| Service | Change | " + " | ".join(f"`{k}`" for k in keys) + " |",
            "|---|---|" + "---|" * len(keys),
            *(f"| {cell(name)} | {what or '—'} | " + " | ".join(f"`{cell(v)}`" for v in values)
              + " |" for name, what, values in lines)]
