"""The collection runbook.platform (runbooks/collections): ansible-doc shows every plugin, and
what it documents of each is what the plugin accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COLLECTIONS = REPO / "runbooks" / "collections"
PLATFORM = COLLECTIONS / "ansible_collections" / "runbook" / "platform"
PLUGINS = sorted(p.stem for p in (PLATFORM / "plugins" / "action").glob("*.py"))
BIN = Path(sys.executable).parent
# What each action plugin checks its arguments with, as Ansible loads it.
SPECS = """
import json, sys
from ansible.plugins.loader import action_loader, init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible_collections.runbook.platform.plugins.module_utils.runbook_action import PASS_ON
print(json.dumps({name: {**action_loader.get("runbook.platform." + name, class_only=True).SPEC,
                         **PASS_ON} for name in sys.argv[2:]}))
"""


def ansible(*argv: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
           "ANSIBLE_HOME": str(folder / ".ansible"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=folder,
                          check=False)


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    done = ansible(sys.executable, "-c", SPECS, str(COLLECTIONS), *PLUGINS,
                   folder=tmp_path_factory.mktemp("specs"))
    assert done.returncode == 0, done.stderr
    found: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    done = ansible(str(BIN / "ansible-doc"), "--json", "-t", "module",
                   *(f"runbook.platform.{name}" for name in PLUGINS),
                   folder=tmp_path_factory.mktemp("docs"))
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _option(spec: dict[str, Any]) -> dict[str, Any]:
    """An argument as an argument spec and DOCUMENTATION both say it, their defaults filled
    in."""
    return {"type": spec.get("type", "str"), "required": spec.get("required", False),
            "default": spec.get("default"), "choices": spec.get("choices"),
            "elements": spec.get("elements")}


def test_there_are_the_nine_plugins_each_with_its_documentation() -> None:
    assert len(PLUGINS) == 9
    documented = sorted(p.stem for p in (PLATFORM / "plugins" / "modules").glob("*.py"))
    assert documented == PLUGINS


@pytest.mark.parametrize("name", PLUGINS)
def test_the_documented_options_are_the_arguments_the_plugin_accepts(
        name: str, specs: dict[str, dict[str, Any]], docs: dict[str, Any]) -> None:
    doc = docs[f"runbook.platform.{name}"]
    options = doc["doc"]["options"]
    assert {k: _option(v) for k, v in options.items()} == \
        {k: _option(v) for k, v in specs[name].items()}
    assert all(option.get("description") for option in options.values())
    assert doc["doc"]["module"] == name and doc["doc"]["short_description"]
    assert doc["return"], "RETURN says what the plugin returns"
    assert all(f"runbook.platform.{name}" in task for task in yaml.safe_load(doc["examples"]))


def test_ansible_doc_shows_every_plugin(tmp_path: Path) -> None:
    done = ansible(str(BIN / "ansible-doc"), "-t", "module",
                   *(f"runbook.platform.{name}" for name in PLUGINS), folder=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in PLUGINS:
        assert f"runbook.platform.{name}" in done.stdout


def test_the_collection_needs_the_installed_ansible_core() -> None:
    from ansible.module_utils.compat.version import LooseVersion
    from ansible.release import __version__

    galaxy = yaml.safe_load((PLATFORM / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("runbook", "platform")
    requires = yaml.safe_load((PLATFORM / "meta" / "runtime.yml").read_text())
    minimum = requires["requires_ansible"].removeprefix(">=")
    assert LooseVersion(__version__) >= LooseVersion(minimum)
