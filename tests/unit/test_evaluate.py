"""The one evaluation of a step before it runs (engine/run/evaluate.py): its condition, its
rendered name and body, its fingerprint, and whether an earlier attempt already did it; and
what each step leaves for the steps after it."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.language.model import Runbook, Step
from engine.language.render import Deferred, render_value
from engine.run.evaluate import (
    evaluate,
    is_done,
    note_step,
    pending,
    pending_results,
    remember,
    remember_done,
    skip,
)
from engine.store import StepRecord
from engine.trust.secrets import Redactor
from tests.unit.build import FILE, runbook, step


def context_for(book: Runbook, params: dict[str, Any] | None = None,
                redactor: Redactor | None = None) -> dict[str, Any]:
    """What templates see before the first step, as the planner builds it."""
    return {"params": dict(params or {}), "inventory": {}, "run": {"id": "r1"}, "vars": {},
            "facts": {}, "secret_env": (redactor or Redactor()).secret_env,
            **pending_results(book)}


def checkpoint(step_id: str, status: str, fingerprint: str,
               result: dict[str, Any] | None = None) -> StepRecord:
    return StepRecord("r1", step_id, status, 1, "2026-01-01T00:00:00", fingerprint,
                      ended_at="2026-01-01T00:00:05", result=result or {})


def test_a_step_renders_its_name_and_body_from_params():
    deploy = step("deploy", {"argv": ["deploy", "{{ params.tag }}"], "timeout": 60},
                  name="Deploy {{ params.tag }}")
    book = runbook(deploy)
    ev = evaluate(deploy, context_for(book, {"tag": "v1.2"}), book, Redactor(), None)
    assert ev.when is True
    assert ev.name == "Deploy v1.2"
    assert ev.spec == {"argv": ["deploy", "v1.2"], "timeout": 60}
    assert ev.fingerprint is not None and ev.deferred_on is None and not ev.done


def test_a_false_condition_skips_the_step_before_anything_else_is_rendered():
    # The name and body use the very param the condition says is missing: no error.
    tag = step("tag", {"argv": ["tag", "{{ params.tag }}"]}, name="Tag {{ params.tag }}",
               when="params.tag is defined")
    book = runbook(tag)
    ev = evaluate(tag, context_for(book), book, Redactor(), None)
    assert ev.when is False
    assert (ev.name, ev.spec, ev.shown, ev.fingerprint) == ("Tag {{ params.tag }}", None,
                                                            None, None)
    assert not ev.done


def test_a_condition_on_a_result_not_known_yet_is_decided_at_run_time():
    read = step("read", register="source")
    use = step("use", when="source.rc == 0")
    book = runbook(read, use)
    ev = evaluate(use, context_for(book), book, Redactor(), None)
    assert ev.when is None
    assert ev.deferred_on == "source"
    assert ev.spec is None and ev.fingerprint is None


def test_a_step_that_runs_but_needs_a_result_not_known_yet_is_rendered_at_run_time():
    read = step("read", register="source")
    use = step("use", {"argv": ["echo", "{{ source.stdout }}"]}, when="params.go")
    book = runbook(read, use)
    ev = evaluate(use, context_for(book, {"go": True}), book, Redactor(), None)
    assert ev.when is True
    assert ev.deferred_on == "source"
    assert ev.spec is None and ev.fingerprint is None


def test_what_a_finished_step_registered_is_seen_by_the_steps_after_it():
    read = step("read", register="source")
    use = step("use", {"argv": ["echo", "{{ source.stdout | trim }}"]}, when="source.rc == 0")
    book = runbook(read, use)
    context = context_for(book)
    remember(read, {"rc": 0, "stdout": "v7\n"}, context)
    ev = evaluate(use, context, book, Redactor(), None)
    assert ev.when is True
    assert ev.spec == {"argv": ["echo", "v7"]}


def test_a_skipped_step_registers_only_that_it_was_skipped():
    read = step("read", register="source", when=False)
    book = runbook(read)
    context = context_for(book)
    skip(read, context)
    skipped = step("if-skipped", when="source.skipped")
    assert evaluate(skipped, context, book, Redactor(), None).when is True
    # Its other fields do not exist (as with Ansible): a condition on one is an error.
    on_rc = step("on-rc", when="source.rc == 0")
    with pytest.raises(InvalidInput, match="has no attribute 'rc'") as caught:
        evaluate(on_rc, context, book, Redactor(), None)
    assert caught.value.path == "$.steps[on-rc].when"


def test_the_same_rendered_step_has_the_same_fingerprint():
    deploy = step("deploy", {"argv": ["deploy", "{{ params.tag }}"]})
    book = runbook(deploy)
    first = evaluate(deploy, context_for(book, {"tag": "v1"}), book, Redactor(), None)
    again = evaluate(deploy, context_for(book, {"tag": "v1"}), book, Redactor(), None)
    assert first.fingerprint == again.fingerprint


@pytest.mark.parametrize("change", [
    {"spec": {"argv": ["deploy", "{{ params.tag }}", "--force"]}},
    {"name": "Deploy it"},
    {"when": "params.tag != ''"},
    {"register": "deployed"},
    {"type": "wait", "spec": {"seconds": 1}},
], ids=["body", "name", "condition", "register", "type"])
def test_a_changed_step_has_another_fingerprint(change):
    deploy = step("deploy", {"argv": ["deploy", "{{ params.tag }}"]})
    changed = Step(**{**deploy.__dict__, **change})
    book = runbook(deploy)
    context = context_for(book, {"tag": "v1"})
    before = evaluate(deploy, context, book, Redactor(), None).fingerprint
    after = evaluate(changed, context, runbook(changed), Redactor(), None).fingerprint
    assert before is not None and after is not None and before != after


def test_a_param_rendered_differently_changes_the_fingerprint():
    deploy = step("deploy", {"argv": ["deploy", "{{ params.tag }}"]})
    book = runbook(deploy)
    v1 = evaluate(deploy, context_for(book, {"tag": "v1"}), book, Redactor(), None)
    v2 = evaluate(deploy, context_for(book, {"tag": "v2"}), book, Redactor(), None)
    assert v1.fingerprint != v2.fingerprint


def test_a_secret_is_masked_in_what_is_shown_and_the_fingerprint_does_not_hold_it():
    login = step("login", {"argv": ["login", "--password", "{{ params.password }}"]})
    book = runbook(login)
    seen = []
    for password in ("hunter2-old", "hunter2-new"):
        redactor = Redactor([password], ["password"])
        ev = evaluate(login, context_for(book, {"password": password}), book, redactor, None)
        assert ev.spec == {"argv": ["login", "--password", password]}  # what the step runs
        assert ev.shown == {"argv": ["login", "--password", "***"]}
        seen.append(ev.fingerprint)
    # A stored fingerprint is of the masked step: nobody can test guesses at the secret
    # against it (and so a changed secret alone does not make a done step new).
    assert seen[0] == seen[1]


def test_a_secret_read_while_rendering_is_masked_in_what_is_shown(monkeypatch):
    monkeypatch.setenv("DEPLOY_KEY", "k3y@with+chars")
    fetch = step("fetch", {"argv": ["curl", "https://u:{{ secret_env('DEPLOY_KEY') | urlencode }}"
                                    "@example.test/", "{{ secret_env('DEPLOY_KEY') }}"]})
    book = runbook(fetch)
    redactor = Redactor()
    ev = evaluate(fetch, context_for(book, redactor=redactor), book, redactor, None)
    assert ev.spec == {"argv": ["curl", "https://u:k3y%40with%2Bchars@example.test/",
                                "k3y@with+chars"]}
    assert ev.shown == {"argv": ["curl", "https://u:***@example.test/", "***"]}


def test_a_secret_with_a_slash_urlencoded_in_a_template_is_masked(monkeypatch):
    monkeypatch.setenv("DEPLOY_KEY", "k3y/with+chars")
    fetch = step("fetch", {"argv": ["curl", "https://u:{{ secret_env('DEPLOY_KEY') | urlencode }}"
                                    "@example.test/"]})
    book = runbook(fetch)
    redactor = Redactor()
    ev = evaluate(fetch, context_for(book, redactor=redactor), book, redactor, None)
    assert ev.shown == {"argv": ["curl", "https://u:***@example.test/"]}


def test_a_secret_integer_param_is_masked_in_what_is_shown():
    unlock = step("unlock", {"argv": ["unlock", "{{ params.pin }}"]})
    book = runbook(unlock)
    redactor = Redactor(["739201"], ["pin"])  # as api.redactor_for builds it: str(value)
    ev = evaluate(unlock, context_for(book, {"pin": 739201}), book, redactor, None)
    assert ev.shown == {"argv": ["unlock", "***"]}


@pytest.mark.parametrize(("status", "same_step", "done"), [
    ("ok", True, True),
    ("skipped", True, True),
    ("failed", True, False),
    ("running", True, False),
    ("waiting", True, False),
    ("interrupted", True, False),
    ("ok", False, False),
])
def test_a_checkpoint_counts_as_done_only_if_it_finished_the_same_rendered_step(
        status, same_step, done):
    deploy = step("deploy", {"argv": ["deploy", "{{ params.tag }}"]})
    book = runbook(deploy)
    earlier = evaluate(deploy, context_for(book, {"tag": "v1" if same_step else "v0"}), book,
                       Redactor(), None)
    record = checkpoint("deploy", status, str(earlier.fingerprint))
    ev = evaluate(deploy, context_for(book, {"tag": "v1"}), book, Redactor(), record)
    assert ev.done is done


def test_a_step_with_no_checkpoint_or_a_deferred_one_is_not_done():
    deploy = step("deploy")
    record = checkpoint("deploy", "ok", "fp")
    assert not is_done(deploy, None, "fp")
    assert not is_done(deploy, record, None)  # its fingerprint is not known yet
    assert is_done(deploy, record, "fp")


def test_a_fresh_step_is_never_taken_as_done():
    read = step("read", fresh=True)
    book = runbook(read)
    first = evaluate(read, context_for(book), book, Redactor(), None)
    record = checkpoint("read", "ok", str(first.fingerprint))
    assert evaluate(read, context_for(book), book, Redactor(), record).done is False


def test_condition_fields_are_kept_as_written_but_checked_for_names():
    check = step("check", {"that": ["params.replicas > 1", "facts.ready"], "message": "m"},
                 kind="assert")
    poll = step("poll", {"until": "poll.rc == 0 and params.replicas > 1", "timeout": 30},
                kind="wait")
    book = runbook(check, poll)
    context = context_for(book, {"replicas": 3})
    context["facts"]["ready"] = True
    assert evaluate(check, context, book, Redactor(), None).spec == check.spec
    # `poll` exists only while the step runs: its names are checked all the same.
    assert evaluate(poll, context, book, Redactor(), None).spec == poll.spec
    typo = step("typo", {"until": "pol.rc == 0", "timeout": 30}, kind="wait")
    with pytest.raises(InvalidInput, match="'pol' is undefined") as caught:
        evaluate(typo, context, runbook(typo), Redactor(), None)
    assert caught.value.path == "$.steps[typo].wait.until"


def test_a_template_error_names_the_file_the_line_and_the_field():
    at = ("steps", 2)
    broken = step("broken", {"argv": ["echo", "{{ params.tga }}"]}, line=20, at=at,
                  file="/work/fragment.yaml",
                  lines={at: 20, (*at, "command"): 21, (*at, "command", "argv", 1): 22})
    book = runbook(broken)
    with pytest.raises(InvalidInput) as caught:
        evaluate(broken, context_for(book, {"tag": "v1"}), book, Redactor(), None)
    error = caught.value
    assert (error.file, error.line, error.path) == ("/work/fragment.yaml", 22,
                                                    "$.steps[broken].command.argv[1]")
    assert "'dict object' has no attribute 'tga'" in error.message


def test_a_template_error_in_a_step_without_a_file_names_the_runbook():
    broken = step("broken", {"argv": ["{{ nosuch }}"]}, file="")
    book = runbook(broken)
    with pytest.raises(InvalidInput) as caught:
        evaluate(broken, context_for(book), book, Redactor(), None)
    assert caught.value.file == FILE


def test_a_fragment_step_sees_its_include_s_args_and_its_own_results_as_local():
    read = step("release-read", register="image", group="release",
                args={"env": "{{ params.to }}"}, local_id="read")
    tag = step("release-tag", {"argv": ["tag", "{{ args.env }}", "{{ local.image.stdout }}"]},
               group="release", args={"env": "{{ params.to }}"}, local_id="tag")
    book = runbook(read, tag)
    context = context_for(book, {"to": "qa"})
    remember(read, {"stdout": "sha256:1"}, context)
    ev = evaluate(tag, context, book, Redactor(), None)
    assert ev.spec == {"argv": ["tag", "qa", "sha256:1"]}
    assert ev.seen["args"] == {"env": "qa"}
    # Steps after the include reach the same result through the include's name.
    assert render_value("{{ release.image.stdout }}", context) == "sha256:1"


def test_before_any_step_runs_every_result_and_step_status_is_not_known_yet():
    read = step("read", register="source")
    plain = step("plain")
    inner = step("release-tag", register="tagged", group="release", local_id="tag")
    context = context_for(runbook(read, plain, inner))
    for template, name in [("{{ source.rc }}", "source"), ("{{ steps.plain.status }}",
                                                          "steps.plain"),
                           ("{{ release.tagged.rc }}", "release.tagged"),
                           ("{{ steps.release.tag.ended_at }}", "steps.release.tag")]:
        with pytest.raises(Deferred) as caught:
            render_value(template, context)
        assert caught.value.name == name


def test_a_declared_output_a_dry_run_could_not_learn_is_not_known_yet():
    read = step("read", {"playbook": "read.yml", "outputs": ["tag", "digest"]}, kind="ansible",
                register="source")
    context = context_for(runbook(read))
    remember(read, {"rc": 0, "outputs": {"tag": "v3"}}, context)
    assert render_value("{{ source.outputs.tag }}", context) == "v3"
    with pytest.raises(Deferred) as caught:
        render_value("{{ source.outputs.digest }}", context)
    assert caught.value.name == "source.outputs.digest"


def test_a_set_step_s_values_become_facts_or_are_not_known_yet_when_it_did_not_run():
    choose = step("choose", {"target": "blue"}, kind="set")
    context = context_for(runbook(choose))
    remember(choose, {"target": "blue"}, context)
    assert render_value("{{ facts.target }}", context) == "blue"
    later = context_for(runbook(choose))
    pending(choose, later)
    with pytest.raises(Deferred) as caught:
        render_value("{{ facts.target }}", later)
    assert caught.value.name == "facts.target"


def test_a_step_done_in_an_earlier_attempt_gives_its_result_and_its_times():
    read = step("read", register="source")
    inner = step("release-tag", group="release", local_id="tag")
    context = context_for(runbook(read, inner))
    remember_done(read, checkpoint("read", "ok", "fp", {"rc": 0, "stdout": "v1"}), context)
    note_step(context, inner, checkpoint("release-tag", "failed", "fp"))
    assert render_value("{{ source.stdout }}", context) == "v1"
    assert render_value("{{ steps.read.status }} {{ steps.read.ended_at }}", context) == \
        "ok 2026-01-01T00:00:05"
    assert render_value("{{ steps.release.tag.status }}", context) == "failed"
