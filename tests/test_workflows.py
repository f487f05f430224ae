"""The GitHub Actions workflows in .github/workflows: actionlint passes on them with shellcheck
checking every ``run:`` block, and their shell, run step by step as a runner would, promotes,
approves, resumes, rolls back and starts a hotfix in the sandbox against a PostgreSQL store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from tests.conftest import OUTER_ENV, POINTERS, REPO
from tests.world import deployment, image

WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent  # actionlint and shellcheck come with the dev dependencies
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
INVENTORY = yaml.safe_load((REPO / "inventories" / "quikapp.yaml").read_text())
ITEMS_UAT_STAGING = [item["id"] for item in INVENTORY["checklists"]["uat-staging"]]


def actionlint(*paths: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "actionlint"), "-no-color", *map(str, paths)], cwd=cwd,
                          env=env, capture_output=True, text=True)


def test_actionlint_and_shellcheck_pass():
    done = actionlint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {
        "promote.yml", "approve.yml", "resume.yml", "hotfix.yml", "rollback.yml"}


def test_actionlint_reports_shellcheck_findings(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: workflow_dispatch\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: echo $1\n")
    done = actionlint(bad, cwd=tmp_path)
    assert done.returncode == 1
    assert "shellcheck reported issue in this script: SC2086" in done.stdout


class Runner:
    """Runs a workflow's ``run:`` steps in order as a fresh GitHub runner would: each with
    ``bash --noprofile --norc -eo pipefail``, the workflow's, job's and step's ``env:``
    evaluated from the inputs, secrets, vars and github contexts, ``$GITHUB_ENV`` carried to
    the steps after, ``uses:`` steps skipped. It stops at the first step that fails."""

    def __init__(self, folder: Path, secrets: dict[str, str], variables: dict[str, str],
                 hidden: set[str]) -> None:
        self.folder = folder
        self.secrets = secrets
        self.vars = variables
        # What the test process points at the sandbox with: a runner has only what the
        # workflow gives it.
        self.base = {k: v for k, v in os.environ.items() if k not in hidden}
        self.sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.count = 0
        # The runner's uv has its cache: uv sync finds the project as installed, offline.
        self.uv_cache = subprocess.run(["uv", "cache", "dir"], env=OUTER_ENV, check=True,
                                       capture_output=True, text=True).stdout.strip()

    def dispatch(self, name: str, actor: str, **given: str) -> tuple[int, str, str]:
        """(exit code, job summary, log) of the workflow dispatched with these inputs."""
        doc = yaml.safe_load((WORKFLOWS / name).read_text())
        declared = doc[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as true
        assert set(given) <= set(declared), f"{name} takes {sorted(declared)}"
        inputs = {k: str(v.get("default", "")).lower() if v.get("type") == "boolean"
                  else str(v.get("default", "")) for k, v in declared.items()}
        inputs.update(given)
        (job,) = doc["jobs"].values()
        self.count += 1
        runner = self.folder / f"runner-{self.count}"
        (runner / "temp").mkdir(parents=True)
        (runner / "home").mkdir()
        files = {n: runner / n.lower() for n in ("GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
        for path in files.values():
            path.touch()
        contexts: dict[str, dict[str, str]] = {
            "inputs": inputs, "secrets": self.secrets, "vars": self.vars,
            "github": {"actor": actor, "ref_name": "main", "sha": self.sha}}
        env = {**self.base, "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": actor,
               "GITHUB_SHA": self.sha, "GITHUB_REF_NAME": "main", "GITHUB_WORKSPACE": str(REPO),
               "RUNNER_TEMP": str(runner / "temp"), "HOME": str(runner / "home"),
               "UV_CACHE_DIR": self.uv_cache, "RUNBOOK_HOME": str(runner / "home" / ".runbook"),
               **{k: str(v) for k, v in files.items()},
               **_evaluate(doc.get("env", {}), contexts), **_evaluate(job.get("env", {}),
                                                                        contexts)}
        log = []
        for step in job["steps"]:
            if "uses" in step:
                continue
            assert "if" not in step, "the runner here runs every run: step"
            script = step["run"]
            assert "${{" not in script, f"{step['name']}: inputs reach the shell through env:"
            carried = dict(line.split("=", 1) for line in
                           files["GITHUB_ENV"].read_text().splitlines())
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=REPO,
                env={**env, **carried, **_evaluate(step.get("env", {}), contexts)},
                capture_output=True, text=True)
            log.append(f"## {step['name']}\n{done.stdout}{done.stderr}")
            if done.returncode != 0:
                break
        return done.returncode, files["GITHUB_STEP_SUMMARY"].read_text(), "\n".join(log)


def _evaluate(env: dict[str, Any], contexts: dict[str, dict[str, str]]) -> dict[str, str]:
    """The ``${{ ctx.name }}`` and ``${{ a || 'default' }}`` expressions the workflows use;
    any other expression fails the test rather than being guessed."""

    def one(match: re.Match[str]) -> str:
        value = ""
        for alternative in match.group(1).split("||"):
            alternative = alternative.strip()
            if alternative.startswith("'"):
                value = alternative.strip("'")
            else:
                context, name = alternative.split(".", 1)
                value = contexts[context].get(name, "")
            if value:
                break
        return value

    return {k: EXPRESSION.sub(one, str(v)) for k, v in env.items()}


def _runner(tmp_path: Path, sandbox: dict[str, str], database: dict[str, str]) -> Runner:
    from engine import sandbox as sb
    from engine.sandbox import seed

    state = (f"postgresql://{database['user']}:{quote(database['password'], safe='')}@"
             f"{database['host']}:{database['port']}/{database['name']}")
    secrets = {"RUNBOOK_STATE": state, "KUBECONFIG": Path(sandbox["kubeconfig"]).read_text(),
               "AWS_ACCESS_KEY_ID": seed.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": seed.SECRET_KEY,
               **{k: v for k, v in sb.environment(sandbox).items()
                  if k.startswith("QUIKAPP_NOTIFY_")}}
    variables = {"RUNBOOK_INVENTORY": sandbox["inventory"]}
    return Runner(tmp_path, secrets, variables, set(POINTERS) | set(sb.environment(sandbox)))


def test_promote_waits_then_approve_and_resume_finish_it(tmp_path, sandbox, database):
    runner = _runner(tmp_path, sandbox, database)
    tag = deployment("uat1")["image"].rsplit(":", 1)[1].removeprefix("uat1-")

    code, summary, log = runner.dispatch("promote.yml", "tester", source="uat1",
                                         target="staging")
    assert code == 0, log  # waiting for approval is not a failed job
    assert "# Change plan: `promote`" in summary
    assert "::notice title=Waiting for approval::" in log
    run_id = re.search(r"^## Run `(\S+)`: waiting$", summary, re.M).group(1)
    items = " ".join(f"--item {i}" for i in ITEMS_UAT_STAGING)
    assert (f"```bash\nrunbook approve {run_id} --step checklist {items} --by NAME\n```\n\n"
            f"then:\n\n```bash\nrunbook resume {run_id}\n```") in summary
    assert deployment("staging")["image"] != image(f"staging-{tag}")

    code, summary, log = runner.dispatch("approve.yml", "alice", run_id=run_id,
                                         items=" ".join(ITEMS_UAT_STAGING))
    assert code == 0, log
    assert f"alice approved items {', '.join(ITEMS_UAT_STAGING)} of step checklist of run " \
           f"{run_id}" in summary

    code, summary, log = runner.dispatch("resume.yml", "tester", run_id=run_id)
    assert code == 0, log
    assert f"## Run `{run_id}`: done" in summary
    assert deployment("staging")["image"] == image(f"staging-{tag}")


def test_rollback_rolls_an_environment_back(tmp_path, sandbox, database):
    runner = _runner(tmp_path, sandbox, database)
    code, summary, log = runner.dispatch("rollback.yml", "tester", env="live")
    assert code == 0, log
    assert "# Change plan: `rollback`" in summary and "`: done" in summary
    assert deployment("live")["image"] == image("live-1.3.9")


def test_hotfix_takes_its_inputs_as_data_and_waits_for_the_cab(tmp_path, sandbox, database):
    runner = _runner(tmp_path, sandbox, database)
    reason = "CVE-2026-1 \"quoted\" $(touch pwned) `touch pwned2`; exit 9"
    code, summary, log = runner.dispatch("hotfix.yml", "tester", tag="1.4.3", reason=reason,
                                         verify_minutes="5")
    assert code == 0, log
    run_id = re.search(r"^## Run `(\S+)`: waiting$", summary, re.M).group(1)
    assert f"runbook approve {run_id} --gate cab --by NAME   # 1 more approval" in summary
    assert not list(REPO.glob("pwned*")) and not list(tmp_path.rglob("pwned*"))
    assert reason.replace("|", "\\|") in summary  # the plan's parameters, as given
