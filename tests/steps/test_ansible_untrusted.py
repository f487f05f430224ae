"""What reaches Ansible from a person, the environment, an inventory or an earlier step is data:
a template inside it is passed on literally and never runs, in a plan or a run."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import pytest

from tests.conftest import HEADER, runbook_process

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def payloads(marks: Path) -> list[str]:
    """Each would create a file under ``marks`` if Ansible (or Jinja) rendered it."""
    return [
        f'CVE {{{{ lookup("pipe", "touch {marks}/pipe; echo pwned-by-$(whoami)") }}}}',
        f"{{% set x = lookup('pipe', 'touch {marks}/block') %}}{{{{ x }}}}",
        f"{{{{ query('pipe', 'touch {marks}/query') }}}}",
        "{{ lookup('ansible.builtin.file', '/etc/hostname') }}-{{ 7 * 7 }}",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__() }}}} {marks}/dunder",
    ]


def inventory(path: Path, value: str) -> Path:
    path.write_text("apiVersion: runbook/v1\nkind: Inventory\nmetadata: {name: hostile}\n"
                    "anyone_may_start: true\n"
                    f"vars:\n  kubeconfig: {json.dumps(value)}\n")
    return path


def echo_book(dest: Path, again: Path) -> str:
    """Params, the user, an inventory value and a registered result, all into extra vars."""
    return HEADER + f"""params:
  reason: {{type: string, required: true}}
steps:
  - id: echo
    ansible:
      playbook: {PLAYBOOKS / 'echo-values.yml'}
      extravars:
        dest: {dest}
        values:
          reason: "{{{{ params.reason }}}}"
          user: "{{{{ run.user }}}}"
          kubeconfig: "{{{{ inventory.vars.kubeconfig }}}}"
          nested: ["{{{{ params.reason }}}}", {{deeper: "{{{{ params.reason }}}}"}}]
      outputs: [reason]
    register: first
  - id: again
    ansible:
      playbook: {PLAYBOOKS / 'echo-values.yml'}
      extravars:
        dest: {again}
        values:
          reason: "{{{{ first.outputs.reason }}}}"
"""


@pytest.mark.parametrize("index", range(5))
def test_a_template_in_any_value_reaches_the_playbook_literally(isolated, index):
    marks = isolated / "marks"
    marks.mkdir()
    payload = payloads(marks)[index]
    dest, again = isolated / "values.json", isolated / "again.json"
    path = isolated / "book.yaml"
    path.write_text(echo_book(dest, again))
    inv = inventory(isolated / "hostile.yaml", payload)
    env = {"RUNBOOK_USER": payload}

    plan = runbook_process("plan", str(path), "--inventory", str(inv), "--reason", payload,
                           env=env)
    out, err = plan.communicate(timeout=240)
    assert plan.returncode == 0, out + err
    assert not dest.exists()  # check mode: the copy only said what it would write
    assert list(marks.iterdir()) == []

    run = runbook_process("run", str(path), "--inventory", str(inv), "--reason", payload,
                          env=env)
    out, err = run.communicate(timeout=240)
    assert run.returncode == 0, out + err
    assert list(marks.iterdir()) == []
    got = json.loads(dest.read_text())
    assert got == {"reason": payload, "user": payload, "kubeconfig": payload,
                   "nested": [payload, {"deeper": payload}]}
    assert json.loads(again.read_text()) == {"reason": payload}
    assert f"pwned-by-{getpass.getuser()}" not in out + err


def test_the_playbook_sees_only_the_environment_it_needs(isolated, write_runbook):
    dest = isolated / "env.json"
    path = write_runbook(HEADER + f"""steps:
  - id: env
    ansible:
      playbook: {PLAYBOOKS / 'echo-values.yml'}
      env: [WANTED_BY_THE_STEP]
      extravars:
        dest: {dest}
        values:
          reason: "-"
          seen: "{{{{ [] }}}}"
""")
    playbook = isolated / "env.yml"
    playbook.write_text((PLAYBOOKS / "echo-values.yml").read_text().replace(
        "{{ values | to_nice_json }}", "{{ lookup('ansible.builtin.env', 'WANTED_BY_THE_STEP',"
        " 'UNRELATED_VARIABLE', 'KUBECONFIG', 'AWS_REGION', default='-') }}"))
    path.write_text(path.read_text().replace(str(PLAYBOOKS / "echo-values.yml"), str(playbook)))
    proc = runbook_process("run", str(path), env={
        "WANTED_BY_THE_STEP": "wanted", "UNRELATED_VARIABLE": "unrelated",
        "KUBECONFIG": "/kube/config", "AWS_REGION": "eu-west-1"})
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    assert dest.read_text().strip() == "wanted,-,/kube/config,eu-west-1"


def test_artifacts_hold_no_secret_of_the_environment(isolated, write_runbook):
    dest = isolated / "out.json"
    path = write_runbook(HEADER + f"""steps:
  - id: echo
    ansible:
      playbook: {PLAYBOOKS / 'echo-values.yml'}
      extravars: {{dest: {dest}, values: {{reason: plain}}}}
""")
    sentinels = {"AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-0001",
                 "AWS_SESSION_TOKEN": "sentinel-aws-session-0002",
                 "PGPASSWORD": "sentinel-pg-password-0003",
                 "DEPLOY_API_TOKEN": "sentinel-api-token-0004"}
    proc = runbook_process("run", str(path), env=sentinels)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    home = Path(os.environ["RUNBOOK_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files)  # the runner's artifacts were kept
    for p in files:
        data = p.read_bytes()
        for value in sentinels.values():
            assert value.encode() not in data, f"{value} in {p}"
    command = json.loads(next(p for p in files if p.name == "command").read_text())
    assert command["env"]["AWS_SECRET_ACCESS_KEY"] == "***"  # the playbook did get it
    assert "PGPASSWORD" not in command["env"]  # not on the allowlist: never passed on
