"""The sandbox process: ``python -m engine.sandbox.serve --dir DIR``. Runs until SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from engine.loader import PROJECT_ROOT
from engine.sandbox import seed
from engine.sandbox.kube import Cluster
from engine.sandbox.kube_http import KubeServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rollout-delay", type=float, default=1.0)
    parser.add_argument("--operator", default="",
                        help="who runs the sandbox: one of its inventory's people")
    args = parser.parse_args()
    where = Path(args.dir)
    where.mkdir(parents=True, exist_ok=True)

    from moto.server import ThreadedMotoServer

    aws = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    aws.start()
    host, port = aws.get_host_and_port()
    aws_url = f"http://{host}:{port}"
    cluster = Cluster(rollout_delay=args.rollout_delay)
    kube = KubeServer(("127.0.0.1", 0), cluster)
    kube.start()

    overlays = seed.seed_overlays(PROJECT_ROOT / "k8s", where)
    seed.seed_aws(aws_url)
    seed.seed_cluster(cluster, overlays / "overlays")
    kubeconfig = write_kubeconfig(where, kube.url)
    inventory = write_inventory(where, kubeconfig, aws_url, overlays / "overlays", kube.url,
                                args.operator)
    # Wait for the seeded rollouts to settle before saying we are up.
    time.sleep(args.rollout_delay + 0.2)
    info = {"pid": os.getpid(), "kube_url": kube.url, "aws_url": aws_url,
            "kubeconfig": str(kubeconfig), "inventory": str(inventory),
            "region": seed.REGION, "registry": seed.REGISTRY, "overlays": str(overlays),
            "rollout_delay": args.rollout_delay}
    tmp = where / "sandbox.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(where / "sandbox.json")
    print(f"sandbox up: {json.dumps(info)}", flush=True)

    stop = {"now": False}

    def on_term(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not stop["now"]:
        time.sleep(0.2)
    kube.shutdown()
    aws.stop()
    return 0


def write_kubeconfig(where: Path, url: str) -> Path:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "sandbox",
              "clusters": [{"name": "sandbox", "cluster": {"server": url}}],
              "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
              "contexts": [{"name": "sandbox",
                            "context": {"cluster": "sandbox", "user": "sandbox"}}]}
    path = where / "kubeconfig"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_inventory(where: Path, kubeconfig: Path, aws_url: str, overlays: Path,
                    kube_url: str, operator: str = "") -> Path:
    """The shipped inventory, pointed at the sandbox's cluster, AWS endpoint and overlays;
    whoever started the sandbox is one of its people, so they can start runs in it."""
    data = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp.yaml").read_text())
    if operator and operator not in data["people"]:
        data["people"][operator] = {"name": "Sandbox operator", "roles": ["release"]}
    data["metadata"]["description"] = "The quikapp inventory, pointed at the local sandbox"
    data["vars"]["kubeconfig"] = str(kubeconfig)
    data["vars"]["aws"]["endpoint_url"] = aws_url
    # The sandbox keeps a maintenance window open for live for a month from its start.
    start = datetime.now(UTC).replace(microsecond=0)
    data["maintenance_windows"] = {"live": [{
        "start": start.isoformat(), "end": (start + timedelta(days=30)).isoformat(),
        "ticket": "SANDBOX"}]}
    for env, settings in data["environments"].items():
        settings["context"] = "sandbox"
        settings["overlay"] = str(overlays / env)
        settings["rollout_timeout"] = 60
        health = f"{kube_url}/sandbox/health/{settings['namespace']}/{settings['deployment']}"
        settings["verify"] = [{"name": "health", "url": health, "status": 200}]
    path = where / "quikapp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


if __name__ == "__main__":
    sys.exit(main())
