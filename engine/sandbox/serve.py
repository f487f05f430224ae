"""The sandbox process: ``python -m engine.sandbox.serve --dir DIR``. Runs until SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from engine import sandbox
from engine.language import services
from engine.language.loader import PROJECT_ROOT  # the sandbox only runs from a checkout
from engine.sandbox import database, prometheus, seed
from engine.sandbox.clock import EXTENSION, SandboxClock
from engine.sandbox.kube import Cluster
from engine.sandbox.kube_http import KubeServer


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rollout-delay", type=float, default=1.0)
    parser.add_argument("--operator", default="",
                        help="who runs the sandbox: one of its inventory's people")
    parser.add_argument("--clock", action="store_true",
                        help="verification windows wait on the sandbox's clock, which moves "
                             "on as they wait (see engine/sandbox/clock.py)")
    args = parser.parse_args()
    where = Path(args.dir)
    where.mkdir(parents=True, exist_ok=True)
    # PostgreSQL starts first, in its own thread: its initdb runs while moto loads.
    shipped = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp.yaml").read_text())
    envs = [env for env, settings in shipped["environments"].items() if "database" in settings]
    project = seed.seed_app_repository(database.copy_project(where))
    postgres = database.Server(envs, project, (where / "postgres.log").open("w"))
    postgres.start()

    from moto.server import ThreadedMotoServer

    aws = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    aws.start()
    host, port = aws.get_host_and_port()
    aws_url = f"http://{host}:{port}"
    cluster = Cluster(rollout_delay=args.rollout_delay)
    kube = KubeServer(("127.0.0.1", 0), cluster)
    if args.clock:
        kube.clock = SandboxClock()
    kube.start()

    # Prometheus starts while the rest is seeded; the sandbox runs without it when it is
    # not installed, as a team without one does.
    program = prometheus.binary()
    release = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp-services.yaml").read_text())
    # The release's web front end answers HTTP too; the worker does not (nothing to scrape).
    web = {env: [s["deployment"] for s in services.of(release, env)
                 if s["name"] not in ("api", "worker")] for env in release["environments"]}
    monitor = prometheus.Server(program, where, kube.url, shipped["environments"], web) \
        if program else None
    overlays = seed.seed_overlays(PROJECT_ROOT / "k8s", where)
    seed.seed_aws(aws_url)
    seed.seed_cluster(cluster, overlays / "overlays")
    kubeconfig = write_kubeconfig(where, kube.url, clock=args.clock)
    try:
        postgres.wait()
        if monitor:
            monitor.wait()
    except RuntimeError as exc:
        postgres.stop()
        if monitor:
            monitor.stop()
        kube.shutdown()
        aws.stop()
        print(f"{exc} (see {where / 'postgres.log'} and {where / 'prometheus.log'})",
              file=sys.stderr, flush=True)
        return 1
    prometheus_url = monitor.url if monitor else ""
    if postgres.missing:
        print(postgres.missing, flush=True)
    def inventory_file() -> Path:
        """The inventories, pointed at the sandbox: quikapp (the api alone, the one a run
        uses unless told otherwise) and quikapp-services (the release of three services)."""
        for name in INVENTORIES[1:]:
            write_inventory(where, kubeconfig, aws_url, overlays / "overlays", kube.url,
                            args.operator, postgres.databases, project, prometheus_url,
                            name=name)
        return write_inventory(where, kubeconfig, aws_url, overlays / "overlays", kube.url,
                               args.operator, postgres.databases, project,
                               prometheus_url)

    inventory = inventory_file()
    # The seeded rollouts settle before the sandbox says it is up.
    while not cluster.settled():
        time.sleep(0.05)
    seeded = cluster.saved()

    def reset() -> None:
        """Everything back to what the sandbox started with, at the same addresses."""
        cluster.restore(seeded)
        if kube.clock:
            kube.clock.release()
        status, body = sandbox.post(f"{aws_url}/moto-api/reset", timeout=60)
        if status != 200:
            raise RuntimeError(f"moto's reset answered {status}: {body}")
        seed.seed_aws(aws_url)
        seed.seed_overlays(PROJECT_ROOT / "k8s", where)
        seed.seed_app_repository(database.copy_project(where))
        postgres.restore()
        inventory_file()
        kube.notifications.clear()

    kube.reset = reset
    info = {"pid": os.getpid(), "kube_url": kube.url, "aws_url": aws_url,
            "kubeconfig": str(kubeconfig), "inventory": str(inventory),
            "inventories": {name: str(where / f"{name}.yaml") for name in INVENTORIES},
            "region": seed.REGION, "registry": seed.REGISTRY, "overlays": str(overlays),
            "rollout_delay": args.rollout_delay, "postgres_folder": str(postgres.folder),
            "postgres_port": postgres.port, "postgres_missing": postgres.missing,
            "notify": notify_urls(shipped, kube.url),
            "prometheus_url": prometheus_url,
            "prometheus_pid": monitor.proc.pid if monitor else None,
            "prometheus_missing": "" if monitor else
            "prometheus is not installed (apt-get install prometheus): no monitoring",
            "databases": {env: {**db, "password_env": shipped["environments"][env]["database"]
                                ["password_env"]} for env, db in postgres.databases.items()}}
    tmp = where / "sandbox.json.tmp"
    # It holds the databases' passwords: for whoever runs the sandbox only.
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(where / "sandbox.json")
    print(f"sandbox up: {json.dumps(info['kube_url'])} {json.dumps(aws_url)}", flush=True)

    stop = {"now": False}

    def on_term(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop["now"]:
        time.sleep(0.2)
    if monitor:
        monitor.stop()
    kube.shutdown()
    aws.stop()
    postgres.stop()
    return 0


def notify_urls(inventory: Mapping[str, Any], kube_url: str) -> dict[str, str]:
    """Each notification URL variable of the inventory → the sandbox's receiver for its
    audience (``GET /sandbox/notifications`` lists what it received)."""
    where = kube_url.removeprefix("http://")
    return {str(entry["env"]): f"json://{where}/sandbox/notify/{audience}"
            for audience, entries in (inventory.get("notify") or {}).items()
            for entry in entries}


def write_kubeconfig(where: Path, url: str, *, clock: bool = False) -> Path:
    cluster: dict[str, Any] = {"server": url}
    if clock:
        cluster["extensions"] = [{"name": EXTENSION,
                                  "extension": {"url": f"{url}/sandbox/clock"}}]
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
              "clusters": [{"name": "sandbox", "cluster": cluster}],
              "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
              "contexts": [{"name": "sandbox",
                            "context": {"cluster": "sandbox", "user": "sandbox"}}]}
    path = where / "kubeconfig"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


INVENTORIES = ("quikapp", "quikapp-services")


def write_inventory(where: Path, kubeconfig: Path, aws_url: str, overlays: Path,
                    kube_url: str, operator: str = "",
                    databases: Mapping[str, Mapping[str, Any]] | None = None,
                    project: Path | None = None, prometheus_url: str = "",
                    name: str = "quikapp") -> Path:
    """A shipped inventory (``name``), pointed at the sandbox's cluster, AWS endpoint,
    overlays, databases and Prometheus; whoever started the sandbox is one of its people, so
    they can start runs in it."""
    data = yaml.safe_load((PROJECT_ROOT / "inventories" / f"{name}.yaml").read_text())
    if operator and operator not in data["people"]:
        data["people"][operator] = {"name": "Sandbox operator", "roles": ["release"]}
    for person, public in demo_keys(where / "keys", list(data["people"])).items():
        data["people"][person]["keys"] = [public]
    data["metadata"]["description"] = f"The {name} inventory, pointed at the local sandbox"
    data["vars"]["kubeconfig"] = str(kubeconfig)
    data["vars"]["aws"]["endpoint_url"] = aws_url
    if project:
        data["vars"]["app_repository"] = str(project)
    # The sandbox keeps a maintenance window open for live for a month from the day it
    # starts (the day, not the second: a reset on the same day writes the same inventory).
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    data["maintenance_windows"] = {"live": [{
        "start": start.isoformat(), "end": (start + timedelta(days=30)).isoformat(),
        "ticket": "SANDBOX"}]}
    for env, settings in data["environments"].items():
        settings["context"] = "sandbox"
        settings["overlay"] = str(overlays / env)
        settings["rollout_timeout"] = 60
        if "deployment" in settings:
            health = (f"{kube_url}/sandbox/health/{settings['namespace']}/"
                      f"{settings['deployment']}")
            settings["verify"] = [{"name": "health", "url": health, "status": 200}]
        db = (databases or {}).get(env)
        if db and project and "database" in settings:
            migrate = [sys.executable, "-m", "engine.sandbox.migrate"]
            settings["database"].update({
                "host": db["host"], "port": db["port"], "name": db["name"], "user": db["user"],
                "migrations_dir": str(project), "migrate_rollback": [*migrate, "rollback"],
                "migrate_version": [*migrate, "version"]})
    for service, spec in (data.get("services") or {}).items():
        if service != "worker":  # the worker answers no HTTP: its rollout verifies it
            spec["verify"] = [{"name": "health", "status": 200,
                               "url": f"{kube_url}/sandbox/health/quikapp-{{env}}/"
                                      "{env}-quikapp-{service}"}]
    if prometheus_url:
        with_prometheus(data, prometheus_url)
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo_keys(folder: Path, people: list[str]) -> dict[str, str]:
    """Each person's public SSH key, generated once into ``folder`` (``keys/alice``, private,
    0600, and ``keys/alice.pub``), so that the demo's people sign their approvals: ``runbook
    approve … --sign .runbook/sandbox/keys/alice``. Kept across resets and restarts."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = {}
    for person in people:
        if not _PLAIN.match(person):
            continue  # a name that cannot be a file name signs with a key of its own
        private, public = folder / person, folder / f"{person}.pub"
        if not (private.is_file() and public.is_file()):
            private.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            f"{person}@runbook-sandbox", "-f", str(private)], check=True,
                           capture_output=True, stdin=subprocess.DEVNULL)
        found[person] = public.read_text().strip()
    return found


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def with_prometheus(data: dict[str, Any], url: str) -> None:
    """The inventory names the sandbox's Prometheus: the hotfix's verification runs its
    analysis, and promoting to live checks staging's monitoring ("Monitoring verified").
    Its analyses measure every second, three times (Prometheus scrapes every second), and
    wait up to half a minute for a release's first samples (a rate needs two scrapes)."""
    monitoring = data.setdefault("monitoring", {})
    monitoring["prometheus"] = url
    for template in (monitoring.get("analyses") or {}).values():
        for metric in template["metrics"]:
            metric.update(interval=1, count=3, consecutiveErrorLimit=30)
    if "release-health" in (monitoring.get("analyses") or {}):
        data["checklists"]["staging-live"].append(
            {"id": "monitoring-verified", "text": "Monitoring verified",
             "check": {"analysis": {"template": "release-health", "env": "staging"}}})


if __name__ == "__main__":
    sys.exit(main())
