"""The services an inventory lists (engine/language/services.py): names filled into patterns,
the environments each runs in, and an inventory without a list as one service."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import InvalidInput
from engine.language import services
from engine.language.loader import PROJECT_ROOT
from engine.run.load import inventory_at
from engine.trust.gates import describe_mismatch

SHIPPED = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp.yaml").read_text())
RELEASE = yaml.safe_load((PROJECT_ROOT / "inventories" / "quikapp-services.yaml").read_text())


def test_an_inventory_without_a_list_is_one_service_named_after_its_repository():
    [api] = services.of(SHIPPED, "live")
    assert api == {"name": "api", "repository": "quikapp/api",
                   "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/quikapp/api",
                   "deployment": "live-quikapp-api", "container": "api", "verify": [],
                   "listed": False}
    assert services.names(SHIPPED) == ["api"]
    assert services.per_service([api], "deployment") == "live-quikapp-api"


def test_listed_services_fill_the_patterns_for_each_environment():
    found = services.of(RELEASE, "uat2")
    assert [(s["name"], s["deployment"], s["container"]) for s in found] == [
        ("api", "uat2-quikapp-api", "api"), ("web", "uat2-quikapp-web", "web"),
        ("worker", "uat2-quikapp-worker", "worker")]
    assert services.per_service(found, "repository") == {
        "api": "quikapp/api", "web": "quikapp/web", "worker": "quikapp/worker"}
    assert [s["name"] for s in services.of(RELEASE, "uat2", ["worker", "api"])] == \
        ["worker", "api"]
    assert services.of(RELEASE, "nowhere") == []


def test_a_service_runs_only_where_it_says_with_what_differs_there():
    inventory = {**RELEASE, "services": {
        "api": {"repository": "quikapp/api"},
        "jobs": {"repository": "quikapp/jobs", "container": "runner",
                 "environments": {"staging": None, "live": {"deployment": "{env}-jobs"}}}}}
    assert [s["name"] for s in services.of(inventory, "qa")] == ["api"]
    jobs = services.of(inventory, "live")[1]
    assert (jobs["deployment"], jobs["container"]) == ("live-jobs", "runner")
    assert services.of(inventory, "staging")[1]["deployment"] == "staging-quikapp-jobs"


def test_a_pattern_is_data_nothing_but_the_two_names_is_read_from_it():
    values = {"env": "live", "service": "web"}
    assert services.fill("{env}-{service}-{{x}}", values) == "live-web-{{x}}"  # not a template
    assert services.problems({**RELEASE, "service_defaults": {"deployment": "{env}-{team}"}}) \
        == [(("service_defaults", "deployment"),
             "'{env}-{team}' names {team}: a pattern knows only {env} and {service}")]


def test_values_per_service(monkeypatch):
    assert services.retag({"api": "uat1-1.4.2", "web": "2.3.1"}, "uat1", "staging") == \
        {"api": "staging-1.4.2", "web": "staging-2.3.1"}
    assert services.retag("uat1-1.4.2", "uat1", "staging") == "staging-1.4.2"
    assert services.tagged({"api": "r/api"}, {"api": "t"}) == {"api": "r/api:t"}
    assert services.differing({"api": "a", "web": "b"}, {"api": "a", "web": "c"}) == ["web"]
    assert services.differing("a", "b", ["api"]) == ["api"]
    assert services.differing("a", "a", ["api"]) == []
    assert services.only({"api": 1, "web": 2}, ["web"]) == {"web": 2}
    assert services.only("x", []) == "x"  # one service's value is always its own


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_shipped_inventory_of_three_services_loads(tmp_path):
    inv = inventory_at(str(PROJECT_ROOT / "inventories" / "quikapp-services.yaml"))
    assert services.names(inv.data) == ["api", "web", "worker"]


def test_without_a_list_each_environment_needs_its_deployment(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(SHIPPED))
    del data["environments"]["qa"]["deployment"]
    with pytest.raises(InvalidInput) as refused:
        inventory_at(str(_write(tmp_path, data)))
    assert "at $.environments.qa: 'deployment' is required" in str(refused.value)
    assert refused.value.file == str(tmp_path / "inv.yaml") and refused.value.line


def test_a_bad_pattern_is_refused_at_its_line(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(RELEASE))
    data["services"]["web"]["deployment"] = "{env}-{name}"
    data["services"]["worker"]["environments"] = {"prod": {}}
    with pytest.raises(InvalidInput) as refused:
        inventory_at(str(_write(tmp_path, data)))
    text = (tmp_path / "inv.yaml").read_text().splitlines()
    assert refused.value.line and "{env}-{name}" in text[refused.value.line - 1]
    assert "names {name}: a pattern knows only {env} and {service}" in str(refused.value)


def test_a_moved_digest_of_one_service_is_named():
    old = {"source_digest": {"api": "sha256:a", "web": "sha256:b"}}
    new = {"source_digest": {"api": "sha256:a", "web": "sha256:c"}}
    assert describe_mismatch(old, new) == [
        "source_digest of web was 'sha256:b' when the plan was made, now 'sha256:c'"]
