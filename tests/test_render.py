import pytest

from engine.errors import InvalidInput
from engine.language.render import Deferred, Pending, condition, render_value

CTX = {"params": {"env": "qa", "n": 3}, "vars": {}, "later": Pending("later")}


def test_single_expression_keeps_its_type_and_text_renders_to_string():
    assert render_value("{{ params.n + 1 }}", CTX) == 4
    assert render_value("n={{ params.n }}", CTX) == "n=3"
    assert render_value({"a": ["{{ params.env }}"]}, CTX) == {"a": ["qa"]}


def test_params_are_data_not_templates():
    ctx = {"params": {"x": "{{ 7 * 6 }}"}}
    assert render_value("{{ params.x }}", ctx) == "{{ 7 * 6 }}"


@pytest.mark.parametrize("template", [
    "{{ nope }}", "{{ params.missing.deeper }}", "x {{ params.nothing }} y",
])
def test_undefined_names_are_invalid_input(template):
    with pytest.raises(InvalidInput, match=r"undefined|has no attribute"):
        render_value(template, CTX)


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ params.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_sandbox_escapes_are_invalid_input(template):
    with pytest.raises(InvalidInput, match="unsafe"):
        render_value(template, CTX)


def test_results_that_do_not_exist_yet_are_deferred():
    with pytest.raises(Deferred):
        render_value("{{ later.stdout }}", CTX)
    assert condition("later is defined", CTX) is True


def test_conditions():
    assert condition("params.env == 'qa'", CTX) is True
    assert condition("{{ params.n > 5 }}", CTX) is False
    assert condition(False, CTX) is False
    assert condition("params.tag is not defined", CTX) is True


@pytest.mark.parametrize(("template", "value"), [
    ("{{ params.n * 60 }}", 180), ("{{ 2 ** 64 }}", 2**64), ("{{ 'ab' * params.n }}", "ababab"),
    ("{{ [1] * 3 + [2] }}", [1, 1, 1, 2]),
    ("{% for i in range(3) %}{% for j in range(2) %}{{ i }}{{ j }},{% endfor %}{% endfor %}",
     "00,01,10,11,20,21,"), ("{{ 'uat1-1.4.2' | regex_replace('^uat1-', '') }}",
                                           "1.4.2"),
    ("{{ 'image:1.4.2' | regex_search('[0-9.]+$') }}", "1.4.2"),
])
def test_ordinary_arithmetic_and_regex_filters_work(template, value):
    assert render_value(template, CTX) == value


@pytest.mark.parametrize(("template", "message"), [
    ("{{ 9 ** 99999999 }}", "too large a number"),
    ("{{ 'x' * 10 ** 9 }}", "too large"),
    ("{{ [0] * 10 ** 7 }}", "too large"),
    ("{{ range(10 ** 9) | list }}", "OverflowError"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
     "loops ask for more than 200000 items"),
    ("{{ params.n / 0 }}", "ZeroDivisionError"),
    ("{{ params.env + 1 }}", "TypeError"),
    ("{{ ('a' * 60 ~ '!') | regex_search('(a|aa)+$') }}", "took more than 0.25 s"),
    ("{{ 'x' | regex_replace('(', '') }}", "invalid regular expression"),
    ("{{ 'x' | regex_replace('(x)', '\\\\2') }}", "invalid replacement"),
])
def test_runaway_or_failing_evaluation_is_invalid_input(template, message):
    with pytest.raises(InvalidInput, match=message):
        render_value(template, CTX)
