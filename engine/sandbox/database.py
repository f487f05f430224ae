"""The sandbox's PostgreSQL: a throwaway server on 127.0.0.1 with a database, an owner and a
password per environment, each at the head of the sandbox application's migrations, so that
``runbook run db-rollback`` works in the sandbox as against a real environment.

It starts from PostgreSQL's own binaries (``/usr/lib/postgresql/*/bin``, else ``initdb`` on
the PATH), as the tests' server does, in a thread of the sandbox process while the rest of
the sandbox starts. PostgreSQL refuses to run as root: then the server runs as the
``postgres`` user, in a folder of /tmp it can reach.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from engine.sandbox import migrate

START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parts[-3].split(".")])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def copy_project(where: Path) -> Path:
    """The application's migrations project, as the sandbox's environments run it."""
    target = where / "app"
    if target.exists():
        shutil.rmtree(target)
    source = resources.files("engine.sandbox") / "app"
    with resources.as_file(source) as path:
        shutil.copytree(path, target)
    return target


def url(host: str, port: int, name: str, user: str, password: str) -> str:
    return f"postgresql://{user}:{quote(password, safe='')}@{host}:{port}/{name}"


class Server(threading.Thread):
    """Starts, seeds and, when told to stop, stops the server. Its thread lives as long as the
    server: the server asks for SIGINT (a fast shutdown) when the thread that started it
    ends, so a sandbox killed with SIGKILL leaves no PostgreSQL behind."""

    def __init__(self, envs: list[str], project: Path, log: IO[str]) -> None:
        super().__init__(name="sandbox-postgres", daemon=True)
        self.envs = envs
        self.project = project
        self.log = log
        self.folder = Path(tempfile.mkdtemp(prefix="runbook-sandbox-pg-", dir="/tmp"))
        self.port = 0
        self.databases: dict[str, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self.missing = ""
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        if bindir() is None:
            # The rest of the sandbox works without it; db-rollback then has no database.
            self.missing = "no PostgreSQL binaries (initdb) found: the sandbox has no databases"
            self._ready.set()
            self._stopping.wait()
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        try:
            self._start()
            self._seed()
        except BaseException as exc:  # reported by wait(), in the sandbox's own thread
            self.error = exc
        self._ready.set()
        self._stopping.wait()
        self._shutdown()

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        if not self._ready.wait(timeout):
            raise RuntimeError(f"PostgreSQL did not start within {timeout:.0f} s")
        if self.error is not None:
            raise RuntimeError(f"PostgreSQL did not start: {self.error}") from self.error

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)

    def _as_owner(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _start(self) -> None:
        where = bindir()
        assert where is not None  # run() checked
        owner = self._as_owner()
        if owner:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run([str(where / "initdb"), "-D", str(self.folder / "data"), "-U", "postgres",
                        "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust",
                        "--auth-host=scram-sha-256"], cwd=self.folder, stdout=self.log,
                       stderr=subprocess.STDOUT, check=True, **owner)
        self.port = _free_port()
        # A sandbox's data is thrown away: no waiting for disks.
        self._proc = subprocess.Popen(
            [str(where / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            cwd=self.folder, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, **owner)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._admin().close()
                return
            except Exception:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"postgres exited with {self._proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(host=str(self.folder), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True, connect_timeout=5)

    def _seed(self) -> None:
        from psycopg import sql

        with self._admin() as conn:
            for env in self.envs:
                name = f"quikapp_{env}".replace("-", "_")
                password = secrets.token_urlsafe(18)
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)))
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(name)))
                self.databases[env] = {"host": "127.0.0.1", "port": self.port, "name": name,
                                       "user": name, "password": password}
        for db in self.databases.values():
            migrate.upgrade(url(db["host"], db["port"], db["name"], db["user"],
                                db["password"]), self.project)
        # Each database as seeded, kept as a template that restore() copies back.
        with self._admin() as conn:
            for db in self.databases.values():
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} IS_TEMPLATE true "
                                     "ALLOW_CONNECTIONS false").format(
                    sql.Identifier(_seeded(db["name"])), sql.Identifier(db["name"])))

    def restore(self) -> None:
        """Every database back to its seeded state (its owner and password are kept); whoever
        is connected to one is disconnected."""
        from psycopg import sql

        if not self.databases:
            return
        with self._admin() as conn:
            for db in self.databases.values():
                name = sql.Identifier(db["name"])
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    name, sql.Identifier(_seeded(db["name"])), sql.Identifier(db["user"])))

    def _shutdown(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _seeded(name: str) -> str:
    return f"{name}_seeded"


def remove_leftover(folder: str | None) -> None:
    """The folder of a server whose sandbox was killed (the server itself ended with it)."""
    if folder and Path(folder).name.startswith("runbook-sandbox-pg-"):
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
