"""The local sandbox: moto's server (ECR, RDS) and the Kubernetes emulator in one background
process, plus the kubeconfig, AWS settings and inventory that point runbooks at them."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import RunbookError
from engine.store import home
from engine.store.owner import pid_alive

STARTUP_TIMEOUT = 120.0


def folder(given: str | None = None) -> Path:
    return Path(given) if given else home() / "sandbox"


def status(where: Path) -> dict[str, Any] | None:
    """The running sandbox's settings, or None when none runs from this folder."""
    info_file = where / "sandbox.json"
    try:
        info: dict[str, Any] = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(int(info["pid"])):
        return None
    return info


def missing_extra() -> str | None:
    """What to install when the sandbox's own dependencies (moto's server) are missing: a
    production install does not carry them."""
    import importlib.util

    if importlib.util.find_spec("moto") is not None \
            and importlib.util.find_spec("flask") is not None:
        return None
    return ("the sandbox needs moto's server, which a production install leaves out: install "
            "the extra with `uv sync --extra sandbox` in a checkout (or "
            "`pip install 'runbook[sandbox]'`)")


def up(where: Path, *, rollout_delay: float = 1.0, operator: str = "",
       clock: bool = False) -> dict[str, Any]:
    """Start the sandbox; ``operator`` (default: the name this process claims) becomes one
    of the people of its inventory; with ``clock``, verification windows wait on the
    sandbox's clock (engine/sandbox/clock.py), not on the wall clock."""
    from engine.language.loader import source_tree
    from engine.system import identity

    if source_tree() is None:
        raise RunbookError("the sandbox runs from a checkout of runbook: it deploys the "
                           "checkout's inventory and overlays, which an installed engine has not")
    problem = missing_extra()
    if problem:
        raise RunbookError(problem)
    operator = identity.check_name(operator or identity.claimed(), "the sandbox operator")
    running = status(where)
    if running:
        return running
    where.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(where)
    log = (where / "sandbox.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.sandbox.serve", "--dir", str(where.resolve()),
         "--rollout-delay", str(rollout_delay), "--operator", operator,
         *(["--clock"] if clock else [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        info = status(where)
        if info and info["pid"] == proc.pid:
            return info
        if proc.poll() is not None:
            tail = (where / "sandbox.log").read_text()[-2000:]
            raise RunbookError(f"the sandbox failed to start:\n{tail}")
        time.sleep(0.1)
    proc.kill()
    raise RunbookError(f"the sandbox did not start within {STARTUP_TIMEOUT:.0f} s")


def _remove_leftovers(where: Path) -> None:
    """What a sandbox killed without being stopped left behind: its settings, its
    PostgreSQL folder, its Prometheus."""
    from engine.sandbox import database

    try:
        old = json.loads((where / "sandbox.json").read_text())
    except (OSError, ValueError):
        old = {}
    database.remove_leftover(old.get("postgres_folder"))
    if old.get("prometheus_pid") and pid_alive(int(old["prometheus_pid"])):
        os.kill(int(old["prometheus_pid"]), signal.SIGTERM)
    (where / "sandbox.json").unlink(missing_ok=True)


def down(where: Path) -> bool:
    info = status(where)
    if info is None:
        return False
    os.kill(info["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while status(where) and time.monotonic() < deadline:
        time.sleep(0.1)
    (where / "sandbox.json").unlink(missing_ok=True)
    return True


def reset(info: dict[str, Any]) -> None:
    """Put a running sandbox back to what it started with: the cluster, ECR and RDS, the
    overlays' and the application's git copies, the databases and the inventory. Its
    addresses, passwords and files stay, so whoever points at it keeps pointing at it."""
    try:
        status, body = post(f"{info['kube_url']}/sandbox/reset", timeout=STARTUP_TIMEOUT)
    except OSError as err:
        raise RunbookError(f"the sandbox could not be reset: {err}") from err
    if status != 200:
        raise RunbookError(f"the sandbox could not be reset: {body}")


def hold_clock(info: dict[str, Any]) -> None:
    """Stop the clock of a sandbox started with one: a verification window stands still."""
    _clock(info, "hold")


def release_clock(info: dict[str, Any]) -> None:
    _clock(info, "release")


def clock_state(info: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's clock: its time, whether it is held, how many wait on it."""
    status, body = post(f"{info['kube_url']}/sandbox/clock", timeout=30, method="GET")
    if status != 200:
        raise RunbookError(f"the sandbox has no clock: {body}")
    state: dict[str, Any] = json.loads(body)
    return state


def _clock(info: dict[str, Any], action: str) -> None:
    status, body = post(f"{info['kube_url']}/sandbox/clock/{action}", timeout=30)
    if status != 200:
        raise RunbookError(f"the sandbox's clock did not {action}: {body}")


def post(url: str, *, timeout: float | None, method: str = "POST") -> tuple[int, str]:
    """Ask one of the sandbox's own plain-HTTP servers; its status and body."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port,
                                      timeout=timeout)
    try:
        conn.request(method, where.path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def environment(info: dict[str, Any]) -> dict[str, str]:
    """The variables that point the engine, Ansible, boto3 and kubectl at the sandbox, the
    database passwords under the names its inventory gives them (``password_env``) and the
    notification URLs of its audiences (``notify``), all received by the sandbox, and its
    Prometheus's URL when it runs one."""
    from engine.sandbox import seed

    env = {"KUBECONFIG": info["kubeconfig"], "AWS_ENDPOINT_URL": info["aws_url"],
           "AWS_ACCESS_KEY_ID": seed.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": seed.SECRET_KEY,
           "AWS_DEFAULT_REGION": info["region"], "RUNBOOK_INVENTORY": info["inventory"]}
    for db in (info.get("databases") or {}).values():
        env[db["password_env"]] = db["password"]
    env.update(info.get("notify") or {})  # the sandbox's receiver of notify steps
    if info.get("prometheus_url"):  # for a person's own queries: the inventory names it
        env["PROMETHEUS_URL"] = info["prometheus_url"]
    return env


def exports(info: dict[str, Any]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in environment(info).items())


def shown(info: dict[str, Any]) -> dict[str, Any]:
    """The settings as ``sandbox status`` shows them: the database passwords only by the
    names of their variables (``sandbox env`` exports them)."""
    from engine.trust.secrets import MASK

    databases = {env: {**db, "password": MASK} for env, db in
                 (info.get("databases") or {}).items()}
    return {**info, "databases": databases}
