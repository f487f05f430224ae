"""What a runbook's templates refer to, checked before anything runs (engine/run/references.py):
params and the like pass, a step's result only from a step before it, declared outputs only,
existing steps and include members only; the error names the file, the line and the field."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidInput
from engine.language.model import Step
from engine.run.references import check
from tests.unit.build import FILE, runbook, step

READ = step("read", {"playbook": "read.yml", "outputs": ["image", "tag"]}, kind="ansible",
            register="source")


def echo(step_id: str, *words: str, **fields: Any) -> Step:
    return step(step_id, {"argv": ["echo", *words]}, **fields)


def refused(*steps: Step, bind: dict[str, str] | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        check(runbook(*steps, bind=bind))
    return caught.value


def fragment(include: str, *members: tuple[str, str | None, list[str]],
             args: dict[str, Any] | None = None) -> list[Step]:
    """The steps an ``include`` with id ``include`` brings in: (id in the fragment, register,
    argv)."""
    return [step(f"{include}-{local}", {"argv": argv}, register=register,
                 group=include.replace("-", "_"), local_id=local, args=args or {},
                 file="/work/fragments/deploy.yaml", include_file=FILE, include_line=30)
            for local, register, argv in members]


def test_templates_naming_params_vars_and_earlier_results_pass():
    check(runbook(
        READ,
        echo("use", "{{ params.tag }}", "{{ vars.namespace }}", "{{ inventory.host }}",
             "{{ run.id }}", "{{ facts.x }}", "{{ source.outputs.tag }}", "{{ source.rc }}",
             "{{ steps.read.ended_at }}", "{{ secret_env('TOKEN') }}",
             when="source.outputs.image != ''"),
    ))


def test_a_result_registered_by_a_later_step_is_refused_with_where_it_is_used():
    at = ("steps", 0)
    use = echo("use", "{{ source.outputs.tag }}", at=at, line=5,
               lines={at: 5, (*at, "command", "argv", 1): 7})
    error = refused(use, READ)
    assert error.message == ("source is registered by step read, which comes later: a step sees "
                             "only what earlier steps register")
    assert (error.file, error.line, error.path) == (FILE, 7, "$.steps[use].command.argv[1]")
    assert error.render().startswith(f"{FILE}:7: at $.steps[use].command.argv[1]: source is")


def test_a_step_cannot_use_what_it_registers_itself():
    loop = echo("loop", "{{ again.stdout }}", register="again")
    assert refused(loop).message == ("again is registered by this step: a step sees only what "
                                     "earlier steps register")


def test_an_output_a_step_does_not_declare_is_refused_with_the_ones_it_does():
    error = refused(READ, echo("use", "{{ source.outputs.tgg }}"))
    assert error.message == ("source.outputs.tgg: step read declares no output 'tgg' "
                             "(outputs: image, tag)")


def test_outputs_of_a_step_type_that_has_none_are_refused():
    error = refused(echo("list", "x", register="listing"), echo("use", "{{ listing.outputs }}"))
    assert error.message == ("listing.outputs: step list is a command step, which has no "
                             "outputs")


def test_a_constant_subscript_is_followed_like_an_attribute():
    error = refused(READ, echo("use", "{{ source['outputs']['tgg'] }}"))
    assert error.message.startswith("source.outputs.tgg: step read declares no output 'tgg'")


def test_a_computed_subscript_is_followed_no_further():
    check(runbook(READ, echo("use", "{{ source.outputs[params.which] }}")))


def test_a_step_that_does_not_exist_is_refused():
    error = refused(echo("a", "x"), echo("b", "{{ steps.c.status }}"))
    assert error.message == "steps.c: there is no step 'c'"
    assert error.path == "$.steps[b].command.argv[1]"


def test_a_bare_condition_is_checked_as_an_expression_but_a_bare_argument_is_text():
    check(runbook(echo("use", "later.outputs.nope"), READ))  # words, not a template
    error = refused(echo("use", "x", when="source.outputs.nope == 'x'"), READ)
    assert error.path == "$.steps[use].when"
    assert error.message.startswith("source is registered by step read, which comes later")
    condition = step("check", {"that": ["source.outputs.nope"], "message": "m"}, kind="assert")
    error = refused(READ, condition)
    assert error.path == "$.steps[check].assert.that[0]"
    assert error.message.startswith("source.outputs.nope: step read declares no output 'nope'")


def test_a_name_the_template_binds_itself_is_not_a_step_s_result():
    check(runbook(READ, echo("loop", "{% for source in params.items %}{{ source.outputs.x }}"
                                     "{% endfor %}"),
                  echo("own", "{% set source = {'outputs': {}} %}{{ source.outputs.x }}")))
    # ... but the same name used outside what binds it is the step's.
    error = refused(READ, echo("outside", "{% for x in [1] %}{% endfor %}"
                                          "{{ source.outputs.x }}"))
    assert error.message.startswith("source.outputs.x: step read declares no output 'x'")


def test_a_template_that_does_not_parse_is_left_to_the_syntax_check():
    check(runbook(echo("a", "{{ later.rc "), echo("b", "x", when="later.rc ==="),
                  echo("c", "x", register="later")))


def test_an_on_failure_step_sees_what_the_step_it_handles_registered():
    undo = echo("undo", "{{ attempt.stderr }}")
    check(runbook(echo("deploy", "x", register="attempt", on_failure=(undo,))))


def test_a_register_named_like_what_templates_already_see_is_refused():
    at = ("steps", 0)
    shadow = echo("shadow", "x", register="params", at=at, lines={(*at, "register"): 12})
    error = refused(shadow)
    assert error.message == "register 'params' is also the name of what templates already see"
    assert (error.line, error.path) == (12, "$.steps[shadow].register")


def test_a_register_named_like_an_include_is_refused():
    steps = [*fragment("release", ("tag", None, ["tag"])), echo("other", "x", register="release")]
    assert refused(*steps).message == "register 'release' is also the name of an include"


def test_an_include_named_like_what_templates_already_see_is_refused():
    error = refused(*fragment("vars", ("tag", None, ["tag"])))
    assert error.message == "include 'vars': the name of what templates already see"
    assert (error.file, error.line) == (FILE, 30)  # where the include is written


def test_an_include_s_members_are_reached_by_its_name_with_underscores():
    steps = fragment("deploy-image", ("retag", "retag", ["retag"]),
                     ("wait-rollout", "rollout", ["wait"]))
    check(runbook(*steps, echo("after", "{{ deploy_image.retag.rc }}",
                               "{{ steps.deploy_image['wait-rollout'].status }}")))


def test_a_register_an_include_does_not_have_is_refused_with_the_ones_it_has():
    steps = fragment("release", ("retag", "retag", ["retag"]), ("wait", "rollout", ["wait"]))
    error = refused(*steps, echo("after", "{{ release.rollou.rc }}"))
    assert error.message == ("release.rollou: include release has no step registering "
                             "'rollou' (its registers: retag, rollout)")


def test_a_step_an_include_does_not_have_is_refused_with_the_ones_it_has():
    steps = fragment("release", ("retag", None, ["retag"]), ("wait", None, ["wait"]))
    error = refused(*steps, echo("after", "{{ steps.release.rollout.status }}"))
    assert error.message == ("steps.release.rollout: include release has no step 'rollout' "
                             "(its steps: retag, wait)")


def test_a_fragment_step_reaches_its_siblings_results_as_local():
    steps = fragment("release", ("read", "image", ["read"]),
                     ("tag", None, ["tag", "{{ local.image.stdout }}"]))
    check(runbook(*steps))
    wrong = fragment("release", ("read", "image", ["read"]),
                     ("tag", None, ["tag", "{{ local.imag.stdout }}"]))
    error = refused(*wrong)
    assert error.message.startswith("release.imag: include release has no step registering")
    assert error.file == "/work/fragments/deploy.yaml"  # where the fragment's template is


def test_an_include_s_args_are_checked_where_the_include_is_written():
    steps = fragment("release", ("tag", None, ["tag", "{{ args.env }}"]),
                     args={"env": "{{ steps.nosuch.status }}"})
    error = refused(*steps)
    assert error.message == "steps.nosuch: there is no step 'nosuch'"
    assert (error.file, error.line, error.path) == (FILE, 30, "$.steps[release].with.env")


def test_what_the_runbook_binds_is_checked_too():
    error = refused(READ, bind={"digest": "{{ source.outputs.digest }}"})
    assert error.message.startswith("source.outputs.digest: step read declares no output")
    assert (error.file, error.path) == (FILE, "$.metadata.bind.digest")
    check(runbook(READ, bind={"tag": "{{ source.outputs.tag }}"}))
