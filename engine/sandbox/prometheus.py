"""The sandbox's Prometheus: a real server (Debian's ``prometheus`` package) started by the
sandbox process when it is installed, scraping every second the metrics endpoint each emulated
deployment exposes, with its environment as the ``env`` label. Its configuration and data are
in the sandbox's folder; it stops with the sandbox."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from engine.sandbox import post

STARTUP_TIMEOUT = 60.0


def binary() -> str | None:
    """The Prometheus server installed on this machine, if any."""
    return shutil.which("prometheus") or \
        ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def config(kube_url: str, environments: Mapping[str, Mapping[str, Any]],
           also: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """One scrape job per environment, of its deployment's metrics endpoint, and one for each
    of the deployments ``also`` names in it (the release's other services that answer HTTP)."""
    target = urlsplit(kube_url).netloc

    def job(name: str, env: str, namespace: str, deployment: str) -> dict[str, Any]:
        return {"job_name": name,
                "metrics_path": f"/sandbox/metrics/{namespace}/{deployment}",
                "static_configs": [{"targets": [target],
                                    "labels": {"env": env, "namespace": namespace,
                                               "deployment": deployment}}]}

    jobs = [job(f"quikapp-{env}", env, settings["namespace"], settings["deployment"])
            for env, settings in environments.items()]
    jobs += [job(f"quikapp-{env}-{deployment}", env, environments[env]["namespace"],
                 deployment) for env, deployments in (also or {}).items()
             for deployment in deployments]
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": jobs}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A Prometheus process serving on 127.0.0.1."""

    def __init__(self, program: str, where: Path, kube_url: str,
                 environments: Mapping[str, Mapping[str, Any]],
                 also: Mapping[str, list[str]] | None = None) -> None:
        self.folder = where / "prometheus"
        shutil.rmtree(self.folder, ignore_errors=True)  # a former sandbox's samples
        self.folder.mkdir(parents=True)
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config(kube_url, environments, also),
                                              sort_keys=False))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (where / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [program, f"--config.file={config_file}",
             f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self) -> None:
        """Until it answers ready; RuntimeError if it exits or does not within the timeout."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}")
            try:
                if post(f"{self.url}/-/ready", timeout=2, method="GET")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus was not ready within {STARTUP_TIMEOUT:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
