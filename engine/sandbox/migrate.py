"""The sandbox application's migration tool, in the part the guide's ``npm run db:migrate:*``
plays for the real one: ``python -m engine.sandbox.migrate version|rollback|upgrade``, run in
a migrations project (its ``migrations/`` holds ``NNNN_name.up.sql`` and ``.down.sql``),
connecting with ``DATABASE_URL`` as the application does.

Each migration and the version it leaves commit in one transaction, under an advisory lock:
a tool killed half-way leaves the version it started from, and two at once take turns.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Any fixed number: it keeps two tools from migrating one database at the same time.
LOCK_KEY = 7_310_418


class MigrationError(Exception):
    """What the tool cannot do, said in one line on stderr (exit code 1)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path


def migrations(project: Path) -> list[Migration]:
    found = []
    for up in sorted((project / "migrations").glob("*.up.sql")):
        version, _, name = up.name.removesuffix(".up.sql").partition("_")
        found.append(Migration(version, name, up, up.with_name(up.name[:-7] + ".down.sql")))
    return found


def describe(version: str | None, known: list[Migration]) -> str:
    if version is None:
        return "none"
    match = next((m for m in known if m.version == version), None)
    name = f"{version} {match.name}" if match else f"{version} (unknown)"
    return f"{name} (head)" if known and known[-1].version == version else name


def current(conn: Any) -> str | None:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM schema_migrations").fetchone()
    return str(row[0]) if row else None


def set_version(conn: Any, version: str | None) -> None:
    conn.execute("DELETE FROM schema_migrations")
    if version is not None:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def upgrade(url: str, project: Path) -> list[str]:
    """Apply every migration after the current one; the versions applied."""
    import psycopg

    known = migrations(project)
    applied = []
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text NOT NULL)")
        now = current(conn)
        versions = [m.version for m in known]
        start = versions.index(now) + 1 if now in versions else 0
        for migration in known[start:]:
            conn.execute(migration.up.read_text())
            applied.append(migration.version)
        if applied:
            set_version(conn, applied[-1])
    return applied


def rollback(url: str, project: Path) -> tuple[str | None, str | None]:
    """Undo the current migration; (the version before, the version after)."""
    import psycopg

    known = migrations(project)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        now = current(conn)
        if now is None:
            raise MigrationError("no migration to roll back")
        index = next((i for i, m in enumerate(known) if m.version == now), None)
        if index is None:
            raise MigrationError(f"the database is at {now}, which no migration here knows")
        conn.execute(known[index].down.read_text())
        after = known[index - 1].version if index else None
        set_version(conn, after)
    return now, after


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("version", "rollback", "upgrade"):
        print("usage: python -m engine.sandbox.migrate version|rollback|upgrade",
              file=sys.stderr)
        return 2
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    project = Path.cwd()
    known = migrations(project)
    if not known:
        print(f"no migrations in {project / 'migrations'}", file=sys.stderr)
        return 2
    try:
        print(act(argv[0], url, project, known))
    except MigrationError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def act(action: str, url: str, project: Path, known: list[Migration]) -> str:
    if action == "version":
        import psycopg

        with psycopg.connect(url) as conn:
            return describe(current(conn), known)
    if action == "upgrade":
        applied = upgrade(url, project)
        return f"applied {', '.join(applied)}" if applied else "already at the head"
    before, after = rollback(url, project)
    return f"rolled back {describe(before, known)}; now {describe(after, known)}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
