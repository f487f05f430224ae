"""Secrets kept out of what the engine shows and stores (engine/trust/secrets.py): the Redactor
that masks them, and which environment variables hold one."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.trust.secrets import MASK, Redactor, environment_secrets


def test_a_secret_is_masked_everywhere_it_appears_in_a_text():
    redactor = Redactor(["s3cr3t-pw"])
    text = "login s3cr3t-pw failed; retrying with s3cr3t-pw\n(s3cr3t-pw)"
    assert redactor.text(text) == "login *** failed; retrying with ***\n(***)"
    assert redactor.text("nothing to hide here") == "nothing to hide here"


def test_secrets_in_nested_data_are_masked_and_everything_else_is_kept():
    redactor = Redactor(["s3cr3t-pw", "tok-0123456"])
    result = {"rc": 0, "ok": True, "none": None, "ratio": 0.5,
              "stdout": "password=s3cr3t-pw",
              "env": {"TOKEN": "tok-0123456", "HOME": "/home/ann"},
              "lines": ["a", "b s3cr3t-pw", ("tok-0123456", 7)]}
    assert redactor.value(result) == {
        "rc": 0, "ok": True, "none": None, "ratio": 0.5, "stdout": "password=***",
        "env": {"TOKEN": MASK, "HOME": "/home/ann"},
        "lines": ["a", "b ***", [MASK, 7]]}


def test_masking_data_leaves_the_original_untouched():
    redactor = Redactor(["s3cr3t-pw"])
    original = {"argv": ["login", "s3cr3t-pw"]}
    assert redactor.value(original) == {"argv": ["login", MASK]}
    assert original == {"argv": ["login", "s3cr3t-pw"]}  # what the step runs keeps the value


@pytest.mark.parametrize("secrets", [["pass12", "pass12word34"], ["pass12word34", "pass12"]],
                         ids=["shorter-first", "longer-first"])
def test_a_secret_that_contains_another_is_masked_whole(secrets):
    redactor = Redactor(secrets)
    assert redactor.text("pw: pass12word34 / pin: pass12") == "pw: *** / pin: ***"
    added = Redactor([secrets[0]])
    added.add(secrets[1])
    assert added.text("pass12word34") == MASK


def test_two_secrets_that_overlap_in_a_text_leave_no_part_of_either():
    redactor = Redactor(["abc123", "123xyz"])
    assert redactor.text("key=abc123xyz") == "key=***"


def test_a_secret_s_characters_are_matched_literally_not_as_a_pattern():
    redactor = Redactor(["p.ss*w(rd)+[1]$", "a|b"])
    assert redactor.text("pw=p.ss*w(rd)+[1]$ or a|b") == "pw=*** or ***"
    # As a regular expression they would match these: as text, they do not.
    assert redactor.text("pass*w(rd)+[1]$ pssw or a b") == "pass*w(rd)+[1]$ pssw or a b"


def test_an_empty_secret_masks_nothing():
    redactor = Redactor(["", "s3cr3t-pw"])
    redactor.add("")
    redactor.add_value("")
    assert redactor.text("plain text") == "plain text"
    assert redactor.text("s3cr3t-pw") == MASK


def test_a_short_secret_value_given_as_such_is_still_masked():
    # Only secrets guessed from the environment need a minimum length (below): a value the
    # runbook declares secret is masked whatever its length.
    redactor = Redactor(["4711"])
    assert redactor.text("pin 4711, port 47110") == "pin ***, port ***0"


def test_a_secret_added_later_is_masked_from_then_on():
    redactor = Redactor()
    assert redactor.text("token tok-0123456") == "token tok-0123456"
    redactor.add("tok-0123456")
    redactor.add("tok-0123456")  # the same secret twice is one secret
    assert redactor.text("token tok-0123456") == "token ***"


def test_a_secret_value_is_masked_also_as_it_is_quoted_in_a_url():
    redactor = Redactor()
    redactor.add_value("p@ss:w/rd%1 x")
    url = "postgresql://app:p%40ss%3Aw%2Frd%251%20x@db:5432/app"
    assert redactor.text(url) == "postgresql://app:***@db:5432/app"
    assert redactor.text("PGPASSWORD=p@ss:w/rd%1 x") == "PGPASSWORD=***"


def test_a_secret_from_the_environment_is_returned_and_masked_from_then_on(monkeypatch):
    monkeypatch.setenv("DEPLOY_TOKEN", "ghp_abc/123+xyz")
    redactor = Redactor()
    assert redactor.secret_env("DEPLOY_TOKEN") == "ghp_abc/123+xyz"
    assert redactor.text("auth ghp_abc/123+xyz in https://x:ghp_abc%2F123%2Bxyz@h/") == \
        "auth *** in https://x:***@h/"


def test_a_secret_from_an_unset_environment_variable_is_invalid_input_naming_it(monkeypatch):
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    with pytest.raises(InvalidInput, match="the environment variable NO_SUCH_SECRET is not set"):
        Redactor().secret_env("NO_SUCH_SECRET")


def test_params_as_shown_and_stored_leave_out_the_secret_ones():
    redactor = Redactor(["hunter2-pw"], secret_params=["password"])
    assert redactor.params({"env": "qa", "password": "hunter2-pw", "count": 3}) == \
        {"env": "qa", "count": 3}


def test_a_secret_number_in_data_is_masked():
    redactor = Redactor(["739201"], secret_params=["pin"])
    assert redactor.value({"argv": ["unlock", 739201]}) == {"argv": ["unlock", MASK]}


@pytest.mark.parametrize("name", [
    "DB_PASSWORD", "db_password", "MYSQL_PASSWD", "GITHUB_TOKEN", "AWS_SESSION_TOKEN",
    "AWS_SECRET_ACCESS_KEY", "CLIENT_SECRET", "SSH_PRIVATE_KEY", "STRIPE_API_KEY",
    "AZURE_CREDENTIALS", "ClientSecret", "SMTP_PASS", "PGPASSFILE_CONTENT",
])
def test_an_environment_variable_named_as_a_secret_holds_one(name):
    assert environment_secrets({name: "v4lue-0123", "OTHER": "unrelated"}) == ["v4lue-0123"]


@pytest.mark.parametrize("name", ["HOME", "PATH", "USER", "AWS_REGION", "KEYBOARD_LAYOUT",
                                  "PUBLIC_KEY_PATH_DIR", "HOSTNAME"])
def test_an_environment_variable_named_otherwise_holds_no_secret(name):
    assert environment_secrets({name: "/some/long/value"}) == []


@pytest.mark.parametrize("value", ["", "abc12", "true", "False", "yes", "NO", "none", "null"])
def test_a_short_or_yes_no_value_is_no_secret_whatever_its_variable_is_called(value):
    # Masking "true" or "abc" everywhere would hide nothing and garble every output.
    assert environment_secrets({"TOKENIZERS_PARALLELISM": value, "DB_PASSWORD": value}) == []


def test_a_variable_the_inventory_names_as_a_password_env_holds_a_secret():
    environ = {"PGPASS_QA": "qa-p4ssw0rd", "PG_QA": "short", "HOST_QA": "db.qa"}
    assert environment_secrets(environ, ["PGPASS_QA", "PG_QA"]) == ["qa-p4ssw0rd"]
