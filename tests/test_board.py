"""runbook board against the sandbox: the seven environments read from the emulated cluster,
the history's soak and drift, a real promotion waiting at its checklist with its approve
commands, as text, JSON, one HTML page rendered by a real headless chromium, and served."""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.language.loader import PROJECT_ROOT
from engine.store import HistoryRecord, open_store
from tests.browser import needs_chromium, parse, rendered_dom, screenshot
from tests.conftest import runbook_process
from tests.runbooks.test_promote import soaked, start
from tests.world import ENVS, deployment

HOSTILE = '<img src=x onerror="alert(1)">'


def _arrange(runbook_cli) -> tuple[str, dict[str, str], list[str]]:  # type: ignore[no-untyped-def]
    """uat1 soaked 25 h, qa's history naming another image than its cluster runs, and
    promote uat1 → staging waiting at its checklist."""
    soaked("uat1")
    at = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    with open_store() as store:
        store.add_history(HistoryRecord(at=at, run_id="by-hand", user="erin",
                                        kind="promotion", env="qa",
                                        data={"image": "quikapp/api:not-what-runs"}))
    run_id = start(runbook_cli, "uat1", "staging")
    status = runbook_cli("status", run_id, "--output", "json").json()
    commands = [w["command"] for w in status["waiting_for"]]  # type: ignore[index]
    assert commands, status
    return run_id, {env: deployment(env)["image"] for env in ENVS}, commands


@needs_chromium
def test_board_shows_the_environments_and_the_waiting_run(  # type: ignore[no-untyped-def]
        in_shared_sandbox, runbook_cli, tmp_path: Path):
    run_id, images, commands = _arrange(runbook_cli)

    data = runbook_cli("board", "--output", "json").json()
    envs = data["environments"]  # type: ignore[index]
    assert [e["env"] for e in envs] == ENVS  # promotion order
    assert {e["env"]: e["image"] for e in envs} == images
    by_env = {e["env"]: e for e in envs}
    assert by_env["uat1"]["agrees"] and 24.9 <= by_env["uat1"]["soak_hours"] <= 25.5
    assert by_env["uat1"]["since"] and by_env["uat2"]["since"] is None
    assert not by_env["qa"]["agrees"]
    assert "not-what-runs" in " ".join(by_env["qa"]["drift"])
    assert by_env["staging"]["lock"]["run_id"] == run_id
    assert by_env["staging"]["waiting"][0]["run"]["id"] == run_id
    assert by_env["staging"]["last_run"]["status"] == "waiting"
    [waiting] = data["waiting"]  # type: ignore[index]
    assert waiting["run"] == run_id
    assert sorted(w["command"] for w in waiting["waits"]) == sorted(commands)

    text = runbook_cli("board")
    assert text.code == 0
    for env, image in images.items():
        assert re.search(rf"^{env} .*\n    runs      {re.escape(image)}", text.out, re.M)
    assert all(c in text.out for c in commands)
    assert "\x1b" not in text.out

    page = tmp_path / "board.html"
    written = runbook_cli("board", "--html", str(page))
    assert written.code == 0, written.err
    source = page.read_text()
    assert "<script" not in source and "src=" not in source.replace(  # no external asset
        "src=x", "")
    rows, whole, elements = parse(rendered_dom(page, tmp_path / "chromium"))
    shown = {row[0]: row for row in rows if row and row[0] in ENVS}
    assert list(shown) == ENVS
    for env, image in images.items():
        assert shown[env][1] == image
    assert "DRIFT" in shown["qa"][5] and "agrees" in shown["uat1"][5]
    assert run_id in shown["staging"][7]  # the lock holder
    for command in commands:
        assert " ".join(command.split()) in whole
    if os.environ.get("RUNBOOK_SCREENSHOT"):  # the README's picture: docs/board.png
        (PROJECT_ROOT / "docs").mkdir(exist_ok=True)
        screenshot(page, tmp_path / "chromium", PROJECT_ROOT / "docs" / "board.png",
                   size="1400,1250")
    shot = tmp_path / "board.png"
    screenshot(page, tmp_path / "chromium", shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # What a cluster or a person wrote is shown as text, never as markup.
    with open_store() as store:
        store.add_history(HistoryRecord(at=datetime.now(UTC).isoformat(), run_id="odd",
                                        user="erin", kind="rollback", env="dev",
                                        data={"image": HOSTILE}))
    assert runbook_cli("board", "--html", str(page)).code == 0
    rows, whole, elements = parse(rendered_dom(page, tmp_path / "chromium"))
    assert HOSTILE in whole and "img" not in elements

    served = runbook_process("board", "--serve", "--port", "0", "--refresh", "5")
    try:
        assert served.stderr is not None
        line = served.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url.group(0), timeout=60) as answer:
            body = answer.read().decode()
            assert answer.status == 200
        assert '<meta http-equiv="refresh" content="5">' in body
        served_rows, _, _ = parse(body)
        assert {r[0]: r[1] for r in served_rows if r and r[0] in ENVS} == images
        assert run_id in body
        for method in ("POST", "PUT", "DELETE"):
            try:
                urllib.request.urlopen(urllib.request.Request(url.group(0), b"x",
                                                              method=method), timeout=60)
            except urllib.error.HTTPError as refused:
                assert refused.code == 405 and refused.headers["Allow"] == "GET"
            else:
                raise AssertionError(f"{method} was answered")
        try:
            urllib.request.urlopen(url.group(0) + "runs", timeout=60)
        except urllib.error.HTTPError as missing:
            assert missing.code == 404
    finally:
        served.terminate()
        served.communicate(timeout=60)


def test_board_without_an_inventory_is_refused(runbook_cli):  # type: ignore[no-untyped-def]
    missing = runbook_cli("board", "--inventory", "nowhere")
    assert missing.code == 2 and "nowhere" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    assert not (Path(os.environ["RUNBOOK_HOME"]) / "state.db").exists()
    served = runbook_cli("board", "--serve", "--port", "70000", "--inventory", "quikapp")
    assert served.code == 2 and "70000" in served.err


def test_board_without_a_cluster_still_shows_the_store(  # type: ignore[no-untyped-def]
        runbook_cli, monkeypatch, tmp_path: Path):
    """No cluster answers (no kubectl config): each environment says so, and the history,
    runs and locks are shown all the same."""
    monkeypatch.setenv("RUNBOOK_INVENTORY", "quikapp")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    if shutil.which("kubectl") is None:
        monkeypatch.setenv("PATH", "")
    soaked_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    with open_store() as store:
        store.add_history(HistoryRecord(at=soaked_at, run_id="r1", user="dave",
                                        kind="promotion", env="live",
                                        data={"image": "quikapp/api:live-1"}))
    data = runbook_cli("board", "--output", "json").json()
    live = data["environments"][-1]  # type: ignore[index]
    assert live["env"] == "live" and live["image"] is None
    assert any("cannot read the cluster" in p for p in live["drift"])
    assert live["history"]["image"] == "quikapp/api:live-1"
    # Told not to read a cluster: the store's records alone, no drift looked for.
    stored = runbook_cli("board", "--no-cluster", "--output", "json").json()
    live = stored["environments"][-1]  # type: ignore[index]
    assert live["history"]["image"] == "quikapp/api:live-1" and live["drift"] == []
    # ... and it says so: not checked, rather than agreeing.
    assert live["checked"] is False and live["agrees"] is None
    text = runbook_cli("board", "--no-cluster").out
    assert "live       not checked" in text and "runs      (not read)" in text
    assert not re.search(r"^\S+ +(ok|DRIFT)\b", text, re.M), text

