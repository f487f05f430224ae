"""Named outputs: what a playbook passes on with set_stats, seen as REGISTER.outputs.NAME."""

import json
import signal
from pathlib import Path

from tests.conftest import HEADER, runbook_process
from tests.test_execute import run_id_of
from tests.test_resume_kill import wait_for

PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "outputs.yml"
DUMP = ("import json,sys; open(sys.argv[1], 'w').write(json.dumps({'tag': sys.argv[2], "
        "'snapshot': json.loads(sys.argv[3]), 'digest': sys.argv[4]}))")
# Waits until the test lets it go: a step to kill the run in.
HOLD = ("import pathlib,time; p = pathlib.Path; p('in-hold').touch(); "
        "[time.sleep(0.05) for _ in iter(lambda: p('go').exists(), True)]")


def read_step(extra: str = "", outputs: str = "[tag, snapshot, digest]") -> str:
    return f"""  - id: read
    name: Read the source
    ansible:
      playbook: {PLAYBOOK}
      extravars: {{tag: "{{{{ params.tag }}}}"{extra}}}
      outputs: {outputs}
    register: source
"""


def dump_step(dest: str = "seen.json", ref: str = "source") -> str:
    return f"""  - id: dump
    command:
      argv: [python3, -c, "{DUMP}", {dest}, "{{{{ {ref}.outputs.tag }}}}",
             "{{{{ {ref}.outputs.snapshot | to_json }}}}", "{{{{ {ref}.outputs.digest }}}}"]
"""


PARAMS = "params:\n  tag: {type: string, default: v1}\n"


def test_outputs_reach_later_steps_as_data(write_runbook, runbook_cli, isolated):
    path = write_runbook(HEADER + PARAMS + "steps:\n" + read_step() + dump_step())
    result = runbook_cli("run", str(path), "--tag", "{{ 6 * 7 }}")
    assert result.code == 0, result.out + result.err
    # Two set_stats tasks filled one mapping (Ansible aggregates them); a null stays null, a
    # number a number; a template in a value stays those characters.
    assert json.loads((isolated / "seen.json").read_text()) == {
        "tag": "{{ 6 * 7 }}", "snapshot": {"id": "snap-1", "size": 3, "problem": None},
        "digest": "sha256:0123"}
    assert "✓ read ok" in result.out and "tag {{ 6 * 7 }}, snapshot snap-1" in result.out
    detail = runbook_cli("status", run_id_of(result.out), "--output", "json").json()
    read = next(s for s in detail["steps"] if s["step_id"] == "read")
    assert read["result"]["outputs"]["digest"] == "sha256:0123"


def test_a_declared_output_the_playbook_did_not_set_fails_the_step(write_runbook, runbook_cli,
                                                                   isolated):
    path = write_runbook(HEADER + PARAMS + "steps:\n"
                         + read_step(", skip_digest: true") + dump_step())
    result = runbook_cli("run", str(path))
    assert result.code == 1
    assert ("playbook outputs.yml did not set the output digest (declared in the step's "
            "outputs: set it with ansible.builtin.set_stats)") in result.out
    assert not (isolated / "seen.json").exists()


def test_outputs_are_masked_like_every_result(write_runbook, runbook_cli, isolated, monkeypatch):
    monkeypatch.setenv("RUNBOOK_SECRET_TAG", "s3cr3t-tag-77")
    path = write_runbook(HEADER + "params:\n  tag: {type: string, secret: true}\n"
                         + "steps:\n" + read_step())
    result = runbook_cli("run", str(path))
    assert result.code == 0, result.out + result.err
    status = runbook_cli("status", run_id_of(result.out), "--output", "json")
    read = next(s for s in status.json()["steps"] if s["step_id"] == "read")
    assert read["result"]["outputs"]["tag"] == "***"
    assert "s3cr3t-tag-77" not in status.out + result.out


def test_a_plan_shows_outputs_of_a_step_that_only_runs_for_real_as_not_known(
        write_runbook, runbook_cli, isolated):
    skipped = read_step().replace("      outputs:", "      check_mode: skip\n      outputs:")
    path = write_runbook(HEADER + PARAMS + "steps:\n" + skipped + dump_step())
    result = runbook_cli("plan", str(path))
    assert result.code == 0, result.out + result.err
    assert "needs the result of 'source'" in result.out
    assert "passes on: tag, snapshot, digest" in result.out
    # A playbook that runs in check mode passes its outputs on to the plan.
    path = write_runbook(HEADER + PARAMS + "steps:\n" + read_step() + dump_step())
    plan = runbook_cli("plan", str(path), "--output", "json").json()
    assert plan["steps"][1]["rendered"]["argv"][4:] == [
        "v1", '{"id": "snap-1", "problem": null, "size": 3}', "sha256:0123"]


def test_a_run_killed_after_a_playbook_resumes_with_its_outputs(write_runbook, runbook_cli,
                                                                isolated):
    hold = f'  - id: hold\n    command: {{argv: [python3, -c, "{HOLD}"]}}\n'
    path = write_runbook(HEADER + PARAMS + "steps:\n" + read_step() + hold + dump_step())
    proc = runbook_process("run", str(path), "--tag", "v7")
    wait_for(isolated / "in-hold", timeout=120)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    run_id = run_id_of(out)
    (isolated / "go").touch()
    result = runbook_cli("resume", run_id)
    assert result.code == 0, result.out + result.err
    (read,) = [line for line in result.out.splitlines() if line.startswith("✓ read ")]
    assert "done in an earlier attempt of this run" in read
    assert "First part of the snapshot" not in result.out  # the playbook did not run again
    assert json.loads((isolated / "seen.json").read_text())["tag"] == "v7"


FRAGMENT = f"""apiVersion: runbook/v1
kind: Fragment
metadata: {{name: reader}}
args:
  tag: {{required: true}}
steps:
  - id: read-it
    ansible:
      playbook: {PLAYBOOK}
      extravars: {{tag: "{{{{ args.tag }}}}"}}
      outputs: [tag, snapshot, digest]
    register: read
  - id: echo
    command: {{argv: [echo, "{{{{ local.read.outputs.tag }}}}"]}}
"""


def include_book(ref: str = "first.read") -> str:
    return (HEADER + PARAMS + "steps:\n"
            "  - id: first\n    include: reader.yaml\n    with: {tag: \"{{ params.tag }}\"}\n"
            + dump_step(ref=ref)
            + "  - id: when\n    command: {argv: [python3, -c, \"import sys; open('at.txt', 'w')"
              ".write(sys.argv[1])\", \"{{ steps.first['read-it'].status }}\"]}\n")


def test_an_include_s_steps_are_reached_by_the_include_s_id(write_runbook, runbook_cli,
                                                            isolated):
    (isolated / "reader.yaml").write_text(FRAGMENT)
    path = write_runbook(include_book())
    result = runbook_cli("run", str(path), "--tag", "v9")
    assert result.code == 0, result.out + result.err
    assert json.loads((isolated / "seen.json").read_text())["tag"] == "v9"
    assert (isolated / "at.txt").read_text() == "ok"
    assert "    v9" in result.out  # the fragment's own step saw it as local.read


def test_validate_refuses_references_a_step_cannot_satisfy(write_runbook, runbook_cli,
                                                          isolated):
    (isolated / "reader.yaml").write_text(FRAGMENT)
    base = HEADER + PARAMS + "steps:\n" + read_step() + dump_step()
    cases = {
        base.replace("source.outputs.digest", "source.outputs.digets"):
            ("book.yaml:17: at $.steps[dump].command.argv[6]: source.outputs.digets: step read "
             "declares no output 'digets' (outputs: tag, snapshot, digest)"),
        base.replace("outputs: [tag, snapshot, digest]", "outputs: [tag, snapshot]"):
            "source.outputs.digest: step read declares no output 'digest'",
        HEADER + PARAMS + "steps:\n" + dump_step() + read_step():
            "source is registered by step read, which comes later",
        HEADER + PARAMS + "steps:\n  - id: c\n    command: {argv: [echo]}\n    register: c\n"
        + dump_step(ref="c"): "c.outputs: step c is a command step, which has no outputs",
        include_book("first.reed"):
            "first.reed: include first has no step registering 'reed' (its registers: read)",
        include_book().replace("steps.first['read-it']", "steps['first-read-it']"):
            "steps.first-read-it: there is no step 'first-read-it'",
        base.replace("register: source", "register: vars"):
            "book.yaml:13: at $.steps[read].register: register 'vars' is also the name of what "
            "templates already see",
        include_book().replace("params.tag }}", "steps.nosuch.status }}"):
            "book.yaml:9: at $.steps[first].with.tag: steps.nosuch: there is no step",
    }
    for text, message in cases.items():
        path = write_runbook(text)
        result = runbook_cli("validate", str(path))
        assert result.code == 2, (message, result.out)
        assert message in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1
    (isolated / "reader.yaml").write_text(FRAGMENT.replace("local.read.outputs.tag",
                                                           "local.read.outputs.tga"))
    result = runbook_cli("validate", str(write_runbook(include_book())))
    assert result.code == 2
    assert "reader.yaml:14: at $.steps[first-echo].command.argv[1]: first.read.outputs.tga" \
        in result.err


def test_a_name_a_template_binds_itself_is_not_a_step_s(write_runbook, runbook_cli, isolated):
    """A loop variable or a set named as a register is the template's own: what it holds is
    not checked against the step's outputs, in a template or in a bare condition."""
    base = HEADER + PARAMS + "steps:\n" + read_step() + dump_step()
    own = {
        "{{ source.outputs.digest }}":
            "{% for source in [{'outputs': {'nope': 1}}] %}{{ source.outputs.nope }}"
            "{% endfor %}",
        '"{{ source.outputs.tag }}"':
            "\"{% set source = {'outputs': {'nope': 1}} %}{{ source.outputs.nope }}\"",
    }
    for old, text in own.items():
        result = runbook_cli("validate", str(write_runbook(base.replace(old, text))))
        assert result.code == 0, (text, result.err)
    when = "    when: source.outputs.nope == 1\n"
    refused = base + when
    result = runbook_cli("validate", str(write_runbook(refused)))
    assert result.code == 2
    assert "at $.steps[dump].when: source.outputs.nope: step read declares no output 'nope'" \
        in result.err


def test_a_resumed_run_still_reaches_an_include_s_steps(write_runbook, runbook_cli, isolated):
    (isolated / "reader.yaml").write_text(FRAGMENT)
    hold = f'  - id: hold\n    command: {{argv: [python3, -c, "{HOLD}"]}}\n'
    path = write_runbook(include_book().replace("  - id: dump\n", hold + "  - id: dump\n"))
    proc = runbook_process("run", str(path), "--tag", "v5")
    wait_for(isolated / "in-hold", timeout=120)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    (isolated / "go").touch()
    result = runbook_cli("resume", run_id_of(out))
    assert result.code == 0, result.out + result.err
    assert "First part of the snapshot" not in result.out  # the fragment did not run again
    assert json.loads((isolated / "seen.json").read_text())["tag"] == "v5"
    assert (isolated / "at.txt").read_text() == "ok"


def test_the_shipped_runbooks_use_named_outputs_only():
    shipped = Path(__file__).resolve().parent.parent.parent / "runbooks"
    for path in [*shipped.glob("*.yaml"), *shipped.glob("fragments/*.yaml")]:
        text = path.read_text(encoding="utf-8")
        assert ".results[" not in text, path  # never a task's title
        assert "_retag." not in text and "steps['" not in text, path  # never a generated name
