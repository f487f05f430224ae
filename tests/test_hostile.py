"""Hostile files and param values: each is refused by a real ``runbook`` process with exit
code 2 and one line naming the file (and the line where there is one), at once, without a
traceback, without quoting a file that is not a runbook or inventory, and with nothing
recorded in the state store."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import HEADER, REPO, runbook_process

# Generous (a refused input takes well under a second, even on a busy machine): this only
# catches a hang, such as a pattern that backtracks for hours.
PROMPT = 30.0
FOREIGN = "SECRET-7f3a-do-not-print"
STEP = "steps:\n  - {id: a, set: {x: 1}}\n"
SLOW = "a" * 60 + "!"  # makes (a|aa)+$ backtrack for hours in Python's re


@dataclass
class Case:
    args: list[str]
    file: str | None  # the file the error must name (None: a runbook's own check message)
    says: str  # what the error must say
    line: int | None = None
    foreign: tuple[str, ...] = ()  # text that must never be printed


Build = Callable[[Path], Case]


def book(work: Path, text: str, name: str = "book.yaml") -> Path:
    path = work / name
    path.write_text(text)
    return path


def run_book(work: Path, text: str, says: str, line: int | None = None,
             *params: str) -> Case:
    path = book(work, text)
    return Case(["run", str(path), *params], str(path), says, line)


def inventory(work: Path, windows: str) -> Path:
    path = work / "inv.yaml"
    path.write_text("apiVersion: runbook/v1\nkind: Inventory\nmetadata: {name: inv}\n"
                    "maintenance_windows:\n  live:\n" + windows)
    return path


def foreign_file(work: Path) -> Path:
    path = work / "credentials"
    path.write_text(f"password: {FOREIGN}\npassword: {FOREIGN}-again\napi_key: [{FOREIGN}]\n")
    return path


def shipped(name: str) -> str:
    return str(REPO / "runbooks" / f"{name}.yaml")


def hotfix(*params: str, says: str, file: str | None = shipped("hotfix")) -> Build:
    return lambda work: Case(["run", "hotfix", "--tag", "1.4.3", "--reason", "CVE-1",
                              *params], file, says)


def param_case(runbook: str, *params: str, says: str) -> Build:
    return lambda work: Case(["run", runbook, *params], shipped(runbook), says)


def deep_flow(work: Path) -> Case:
    return run_book(work, HEADER + "vars: {x: " + "[" * 100 + "]" * 100 + "}\n" + STEP,
                    "nested more than 50 levels deep", 4)


def deep_block(work: Path) -> Case:
    nested = "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 80)) + f"{'  ' * 80}leaf: 1\n"
    return run_book(work, HEADER + STEP + "vars:\n" + nested, "nested more than 50 levels")


def deeper_than_libyaml(work: Path) -> Case:
    return run_book(work, HEADER + "vars: {x: " + "[" * 20000 + "]" * 20000 + "}\n" + STEP,
                    "nest", 4)


def recursive_alias(work: Path) -> Case:
    return run_book(work, HEADER + "vars: &v {again: *v}\n" + STEP, "a recursive alias", 4)


def recursive_alias_in_list(work: Path) -> Case:
    return run_book(work, HEADER + STEP + "vars:\n  x: &x [1, [2, *x]]\n",
                    "a recursive alias", 7)


def recursive_alias_foreign(work: Path) -> Case:
    path = book(work, f"{FOREIGN}: &a [*a]\n", "loop.yaml")
    return Case(["validate", str(path)], str(path), "a recursive alias", 1, (FOREIGN,))


def undefined_alias_in_a_foreign_file(work: Path) -> Case:
    path = book(work, f"key: *{FOREIGN}\n", "alias.yaml")
    return Case(["validate", str(path)], str(path), "found undefined alias", 1, (FOREIGN,))


def billion_laughs(work: Path) -> Case:
    lines = ['x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        lines.append(f"x-{name}: &{name} [" + ",".join([f"*{'abcdefghi'[i]}"] * 9) + "]")
    return run_book(work, HEADER + "\n".join(lines) + "\n" + STEP,
                    "YAML aliases expand to more than")


def alias_chain(work: Path) -> Case:
    lines = ["x-0: &a0 [1]"] + [f"x-{i}: &a{i} [*a{i - 1}]" for i in range(1, 70)]
    return run_book(work, HEADER + "\n".join(lines) + "\n" + STEP,
                    "YAML aliases expand to more than 50 levels")


def nul_byte(work: Path) -> Case:
    path = work / "book.yaml"
    path.write_bytes((HEADER + "vars: {a: \"x\x00y\"}\n" + STEP).encode())
    return Case(["run", str(path)], str(path), "a NUL byte: not a text file", 4)


def utf16(work: Path) -> Case:
    path = work / "book.yaml"
    path.write_bytes((HEADER + STEP).encode("utf-16"))
    return Case(["validate", str(path)], str(path), "a NUL byte", 1)


def control_character(work: Path) -> Case:
    return run_book(work, HEADER + STEP + "vars: {a: \"bell\x07\"}\n",
                    "the character #x0007 is not allowed", 6)


def fifty_megabytes(work: Path) -> Case:
    path = work / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(50_000_000)
    return Case(["run", str(path)], str(path), "larger than 1 MB")


def just_over_a_megabyte(work: Path) -> Case:
    return run_book(work, HEADER + STEP + "#" * 1_000_000 + "\n", "larger than 1 MB")


def hundred_thousand_steps(work: Path) -> Case:
    steps = "".join(f"  - {{id: s{i}, set: {{x: {i}}}}}\n" for i in range(100_000))
    return run_book(work, HEADER + "steps:\n" + steps, "larger than 1 MB")


def ten_thousand_steps(work: Path) -> Case:
    steps = "".join(f"  - {{id: s{i}, set: {{x: {i}}}}}\n" for i in range(10_000))
    return run_book(work, HEADER + "steps:\n" + steps, "more than 10000 YAML nodes")


def empty(work: Path) -> Case:
    return run_book(work, "# nothing\n", "the file is empty", 1)


def binary_junk(work: Path) -> Case:
    path = work / "junk.yaml"
    path.write_bytes(bytes(range(1, 256)) * 40)
    return Case(["validate", str(path)], str(path), "malformed YAML")


def python_tag(work: Path) -> Case:
    return run_book(work, HEADER + STEP + "vars: {x: !!python/object/apply:os.system [id]}\n",
                    "could not determine a constructor", 6)


def infinite_timeout(work: Path) -> Case:
    return run_book(work, HEADER + "steps:\n  - id: a\n    command: {argv: [true], "
                    "timeout: .inf}\n", ".inf and .nan are not numbers", 6)


def etc_passwd_relative(work: Path) -> Case:
    rel = os.path.relpath("/etc/passwd", work)
    return Case(["run", rel], rel, "not a runbook", 1, ("root:", "/bin/", "nologin"))


def etc_passwd_validate(work: Path) -> Case:
    return Case(["validate", "/etc/passwd"], "/etc/passwd", "not a runbook", 1,
                ("root:", "nologin"))


def etc_passwd_included(work: Path) -> Case:
    rel = os.path.relpath("/etc/passwd", work)
    path = book(work, HEADER + f"steps:\n  - id: x\n    include: {rel}\n")
    return Case(["run", str(path)], "/etc/passwd", f"(included from {path}:5)", 1,
                ("root:", "nologin"))


def etc_passwd_inventory(work: Path) -> Case:
    path = book(work, HEADER + STEP)
    return Case(["run", str(path), "--inventory", "/etc/passwd"], "/etc/passwd",
                "not an inventory", 1, ("root:", "nologin"))


def symlink_to_foreign(work: Path) -> Case:
    link = work / "book.yaml"
    link.symlink_to(foreign_file(work))
    return Case(["run", str(link)], str(link), "not a runbook", 1, (FOREIGN, "password"))


def symlink_to_shadow(work: Path) -> Case:
    if not os.access("/etc/shadow", os.R_OK):
        pytest.skip("/etc/shadow is not readable here")
    first = Path("/etc/shadow").read_text().split(":")[0]
    link = work / "book.yaml"
    link.symlink_to("/etc/shadow")
    return Case(["run", str(link)], str(link), "not a runbook", 1, (f"{first}:",))


def foreign_with_duplicate_keys(work: Path) -> Case:
    path = foreign_file(work)
    return Case(["validate", str(path)], str(path), "not a runbook", 1, (FOREIGN, "password"))


def include_of_foreign(work: Path) -> Case:
    foreign = foreign_file(work)
    path = book(work, HEADER + "steps:\n  - id: x\n    include: credentials\n")
    return Case(["validate", str(path)], str(foreign), "not a fragment", 1,
                (FOREIGN, "password"))


def inventory_of_foreign(work: Path) -> Case:
    foreign = foreign_file(work)
    path = book(work, HEADER + STEP)
    return Case(["run", str(path), "--inventory", str(foreign)], str(foreign),
                "not an inventory", 1, (FOREIGN, "password"))


def a_runbook_as_inventory(work: Path) -> Case:
    path = book(work, HEADER + STEP)
    return Case(["run", str(path), "--inventory", str(path)], str(path),
                "not an inventory: expected a YAML mapping with kind: Inventory "
                "(this is a Runbook)", 2)


def window(start: str, end: str, says: str) -> Build:
    def build(work: Path) -> Case:
        inv = inventory(work, f"    - {{start: '{start}', end: '{end}'}}\n")
        path = book(work, HEADER + STEP)
        return Case(["run", str(path), "--inventory", str(inv)], str(inv), says, 6)
    return build


def expiry(hours: str, says: str) -> Build:
    def build(work: Path) -> Case:
        inv = work / "inv.yaml"
        inv.write_text("apiVersion: runbook/v1\nkind: Inventory\nmetadata: {name: inv}\n"
                       f"approvals: {{expiry_hours: {hours}}}\n")
        path = book(work, HEADER + STEP)
        return Case(["run", str(path), "--inventory", str(inv)], str(inv), says, 4)
    return build


def template(expr: str, says: str) -> Build:
    return lambda work: run_book(work, HEADER + f"vars: {{x: \"{expr}\"}}\n" + STEP, says)


def slow_param_pattern(work: Path) -> Case:
    path = book(work, HEADER + "params: {name: {pattern: '(a|aa)+$'}}\n" + STEP)
    return Case(["run", str(path), "--name", SLOW], str(path), "took more than 0.25 s")


def slow_regex_search(work: Path) -> Case:
    path = book(work, HEADER + "params: {name: {}}\n"
                "vars: {x: \"{{ params.name | regex_search('(a|aa)+$') }}\"}\n" + STEP)
    return Case(["run", str(path), "--name", SLOW], str(path), "took more than 0.25 s")


def slow_regex_replace(work: Path) -> Case:
    path = book(work, HEADER + "params: {name: {}}\n"
                "checks:\n  - that: \"params.name | regex_replace('(a|aa)+$', '') == ''\"\n"
                "    message: refused\n" + STEP)
    return Case(["run", str(path), "--name", SLOW], str(path), "took more than 0.25 s", 6)


def invalid_param_pattern(work: Path) -> Case:
    return run_book(work, HEADER + "params: {name: {pattern: '(unclosed'}}\n" + STEP,
                    "invalid regular expression", 4)


def default_out_of_bounds(work: Path) -> Case:
    return run_book(work, HEADER + "params: {n: {type: integer, default: 0, minimum: 1}}\n"
                    + STEP, "0 is outside the param's minimum and maximum", 4)


CASES: dict[str, Build] = {
    "deep-flow-nesting": deep_flow,
    "deep-block-nesting": deep_block,
    "nesting-deeper-than-libyaml-allows": deeper_than_libyaml,
    "recursive-alias": recursive_alias,
    "recursive-alias-in-a-list": recursive_alias_in_list,
    "recursive-alias-in-a-foreign-file": recursive_alias_foreign,
    "undefined-alias-in-a-foreign-file": undefined_alias_in_a_foreign_file,
    "billion-laughs": billion_laughs,
    "alias-chain-70-deep": alias_chain,
    "nul-byte": nul_byte,
    "utf-16-file": utf16,
    "control-character": control_character,
    "50-mb-file": fifty_megabytes,
    "just-over-1-mb": just_over_a_megabyte,
    "100k-step-runbook": hundred_thousand_steps,
    "10k-step-runbook": ten_thousand_steps,
    "empty-file": empty,
    "binary-junk": binary_junk,
    "python-object-tag": python_tag,
    "infinite-timeout": infinite_timeout,
    "run-../../etc/passwd": etc_passwd_relative,
    "validate-/etc/passwd": etc_passwd_validate,
    "include-of-/etc/passwd": etc_passwd_included,
    "inventory-/etc/passwd": etc_passwd_inventory,
    "symlink-to-a-credentials-file": symlink_to_foreign,
    "symlink-to-/etc/shadow": symlink_to_shadow,
    "foreign-file-with-duplicate-keys": foreign_with_duplicate_keys,
    "include-of-a-credentials-file": include_of_foreign,
    "inventory-that-is-a-credentials-file": inventory_of_foreign,
    "a-runbook-given-as-inventory": a_runbook_as_inventory,
    "window-tomorrow": window("tomorrow", "2026-11-29T02:00:00Z",
                              "start 'tomorrow' is not an ISO 8601 date"),
    "window-without-time-zone": window("2026-11-28T22:00:00", "2026-11-29T02:00:00",
                                       "has no time zone"),
    "window-ending-before-it-starts": window("2026-11-29T02:00:00Z", "2026-11-28T22:00:00Z",
                                             "the window ends before it starts"),
    "approval-expiry-nan": expiry(".nan", ".inf and .nan are not numbers"),
    "approval-expiry-1e300": expiry("1.0e+300", "is greater than the maximum of 8760"),
    "template-range-10**9": template("{{ range(10**9) | list }}", "OverflowError: Range too big"),
    "template-huge-power": template("{{ 9 ** 99999999 }}", "is too large a number"),
    "template-huge-string": template("{{ 'x' * 10**9 }}", "is too large"),
    "template-division-by-zero": template("{{ 1 / 0 }}", "ZeroDivisionError"),
    "template-nested-loops": template(
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "loops ask for more than"),
    "template-endless-macro": template(
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
    "catastrophic-param-pattern": slow_param_pattern,
    "catastrophic-regex_search": slow_regex_search,
    "catastrophic-regex_replace": slow_regex_replace,
    "invalid-param-pattern": invalid_param_pattern,
    "param-default-out-of-bounds": default_out_of_bounds,
    "verify-minutes-nan": hotfix("--verify-minutes", "nan", says="expects a finite number"),
    "verify-minutes-inf": hotfix("--verify-minutes", "inf", says="expects a finite number"),
    "verify-minutes--inf": hotfix("--verify-minutes=-inf", says="expects a finite number"),
    "verify-minutes-1e999": hotfix("--verify-minutes", "1e999",
                                   says="expects a finite number"),
    "verify-minutes-0": hotfix("--verify-minutes", "0", says="is below the minimum 1"),
    "verify-minutes-241": hotfix("--verify-minutes", "241", says="is above the maximum 240"),
    "hotfix-tag-..": hotfix("--tag", "..", says="does not match"),
    "hotfix-tag-.hidden": hotfix("--tag", ".hidden", says="does not match"),
    "hotfix-tag--1.4.2": hotfix("--tag=-1.4.2", says="does not match"),
    "hotfix-tag-1..2-as-default-branch": hotfix(
        "--tag", "1..2", says="hotfix/1..2 is not a valid git branch name", file=None),
    "hotfix-branch-with-..": hotfix("--branch", "hotfix/../main", says="does not match"),
    "hotfix-branch-leading-dash": hotfix("--branch=-f", says="does not match"),
    "hotfix-branch-.lock": hotfix("--branch", "hotfix/x.lock", says="does not match"),
    "hotfix-reason-two-lines": hotfix("--reason", "one\ntwo", says="does not match"),
    "rollback-to-revision-0": param_case("rollback", "--env", "qa", "--to-revision", "0",
                                         says="is below the minimum 1"),
    "rollback-to-revision-1e999": param_case("rollback", "--env", "qa", "--to-revision",
                                             "1e999", says="expects an integer"),
    "rollback-to-revision-40-digits": param_case(
        "rollback", "--env", "qa", "--to-revision", "9" * 40,
        says="expects an integer of at most 18 digits"),
    "promote-tag-..": param_case("promote", "--from", "qa", "--to", "uat1", "--tag", "..",
                                 says="does not match"),
    "promote-from-with-a-newline": param_case("promote", "--from", "qa\nlive", "--to", "uat1",
                                              says="does not match"),
    "db-restore-snapshot-a--b": param_case("db-restore", "--env", "qa", "--snapshot-id",
                                           "a--b", says="does not match"),
}


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_hostile_input_is_refused_at_once(build: Build, isolated: Path, runbook_cli) -> None:
    case = build(isolated)
    started = time.monotonic()
    # One of the shipped inventory's people, so that what is refused is the input itself.
    proc = runbook_process(*case.args, env={"RUNBOOK_USER": "dave"})
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, (out, err)
    assert elapsed < PROMPT, f"took {elapsed:.1f} s"
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("runbook: error: "), err
    assert "Traceback" not in err and "unexpected error" not in err
    if case.file is not None:
        where = case.file if case.line is None else f"{case.file}:{case.line}:"
        assert where in err, err
    assert case.says in err, err
    for text in case.foreign:
        assert text not in err
    assert runbook_cli("status", "--output", "json").json() == []
    assert runbook_cli("lock", "list", "--output", "json").json() == []


def damaged_store(home: Path) -> Path:
    """A state store with a few hundred runs, then one page in its middle overwritten."""
    from engine.store import EventRecord, RunRecord
    from engine.store.sqlite import SqliteStore

    path = home / "state.db"
    store = SqliteStore(path)
    for i in range(200):
        store.create_run(RunRecord(id=f"r{i:04d}", runbook="book", path="/b", runbook_sha="a",
                                   inventory=None, inventory_sha="b", params={"x": "y" * 100},
                                   user="u", started_at="2026-01-01T00:00:00Z", plan_hash="c"))
        store.add_event(EventRecord(f"r{i:04d}", "2026-01-01T00:00:00Z", "note",
                                    {"text": "z" * 200}))
    store.close()
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    middle = path.stat().st_size // page // 2
    with path.open("r+b") as fh:
        fh.seek(middle * page)
        fh.write(b"\xa5" * page)
    return path


@pytest.mark.parametrize("command", [["status"], ["lock", "list"], ["run", "BOOK"],
                                     ["history"]])
def test_a_damaged_state_store_is_refused_and_left_alone(command: list[str],
                                                         isolated: Path) -> None:
    path = damaged_store(Path(os.environ["RUNBOOK_HOME"]))
    before = path.read_bytes()
    runbook = book(isolated, HEADER + STEP)
    started = time.monotonic()
    proc = runbook_process(*[str(runbook) if a == "BOOK" else a for a in command])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert time.monotonic() - started < PROMPT
    assert err.count("\n") == 1
    assert f"{path}: the state store is damaged" in err
    assert path.read_bytes() == before
