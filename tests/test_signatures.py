"""Signed approvals with real ssh-keygen keys: a good signature counts; a missing one where
the inventory requires it, another person's key, the starter's key, a signature over another
payload or replayed from another run are refused with nothing recorded; an approval edited
in the database afterwards is caught by `audit verify`; the change record's commands check
a signature with ssh-keygen alone; a key listed for two people refuses the inventory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import runbook_process

PEOPLE = ("alice", "bob", "carol", "tester")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A real ed25519 key pair per person (private key at the path, public beside it)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    found = {}
    for person in PEOPLE:
        path = folder / person
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path),
                        "-C", person], check=True)
        found[person] = path
    return found


def public(path: Path) -> str:
    return Path(f"{path}.pub").read_text().strip()


def inventory(keys: dict[str, Path], *, signed: str = "required") -> dict:
    roles = {"alice": ["cab"], "bob": ["cab"], "carol": ["qa"], "tester": ["cab", "release"]}
    return {
        "apiVersion": "runbook/v1", "kind": "Inventory", "metadata": {"name": "people"},
        "people": {p: {"roles": roles[p], "keys": [public(keys[p])]} for p in PEOPLE},
        "approvals": {"signed_checklists": {"release": signed}},
        "checklists": {"release": [
            {"id": "tests", "text": "Unit tests pass"},
            {"id": "notes", "text": "Release notes written", "signed": "optional"},
            {"id": "cab-ok", "text": "CAB approval",
             "approval": {"gate": "cab", "role": "cab", "quorum": 2,
                          "required_ticket": True}}]}}


def write(isolated: Path, data: dict) -> Path:
    path = isolated / "people.yaml"
    path.write_text(yaml.safe_dump(data))
    book = isolated / "release.yaml"
    book.write_text(f"""\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: release, inventory: {path}}}
steps:
  - id: checklist
    approval: {{prompt: "release", items: "{{{{ inventory.checklists.release }}}}"}}
  - id: done
    command: {{argv: [echo, released]}}
""")
    return book


def start(runbook_cli, book: Path) -> str:
    first = runbook_cli("run", str(book))
    assert first.code == 3, first.out + first.err
    return first.out.split()[1]


def store_rows(isolated: Path) -> tuple[list[tuple], int]:
    """The approval rows and the number of journal records, read from the SQLite file."""
    db = sqlite3.connect(Path(os.environ["RUNBOOK_HOME"]) / "state.db")
    try:
        approvals = db.execute("SELECT run_id, item, by_name, fingerprint FROM approvals "
                               "ORDER BY at").fetchall()
        journal = db.execute("SELECT count(*) FROM journal").fetchone()[0]
    finally:
        db.close()
    return approvals, journal


def refused(runbook_cli, isolated: Path, *args: str) -> str:
    """Run an approve that must be refused: exit 2, one line, nothing recorded."""
    before = store_rows(isolated)
    result = runbook_cli("approve", *args)
    assert result.code == 2, result.out + result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert store_rows(isolated) == before
    return result.err


def test_a_signed_approval_counts_and_verifies(isolated, keys, runbook_cli):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    given = runbook_cli("approve", run_id, "--step", "checklist", "--item", "tests",
                        "--item", "notes", "--by", "carol", "--sign", str(keys["carol"]))
    assert given.code == 0, given.err
    for person in ("alice", "bob"):
        gate = runbook_cli("approve", run_id, "--gate", "cab", "--by", person, "--ticket",
                           "CHG-7", "--sign", str(keys[person]))
        assert gate.code == 0, gate.err
    assert runbook_cli("resume", run_id).code == 0
    approvals = runbook_cli("status", run_id, "--output", "json").json()["approvals"]
    fingerprints = {a["by"]: a["fingerprint"] for a in approvals}
    shown = subprocess.run(["ssh-keygen", "-l", "-f", f"{keys['alice']}.pub"],
                           capture_output=True, text=True, check=True).stdout.split()[1]
    assert fingerprints["alice"] == shown
    assert all(a["signature"].startswith("-----BEGIN SSH SIGNATURE-----") for a in approvals)
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0 and verified.out.startswith("journal intact"), verified.out
    # The journal's approval record holds the key's fingerprint and the hash of what the
    # row holds (signature, key, payload), not the texts again.
    db = sqlite3.connect(Path(os.environ["RUNBOOK_HOME"]) / "state.db")
    records = [json.loads(d) for (d,) in db.execute(
        "SELECT data FROM journal WHERE kind = 'approval'")]
    db.close()
    assert len(records) == 4 and all(len(r["signed_sha256"]) == 64 and r["fingerprint"]
                                     for r in records)
    assert not any("signature" in r or "payload" in r or "signer_key" in r for r in records)
    # The change record shows how to check each signature with ssh-keygen alone.
    journal = runbook_cli("audit", "export", "--run", run_id).out
    assert journal.count("ssh-keygen -Y verify -f allowed_signers") == 3  # carol signed once


def test_unsigned_where_required_is_refused_and_optional_items_need_none(
        isolated, keys, runbook_cli):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    err = refused(runbook_cli, isolated, run_id, "--step", "checklist", "--item", "tests",
                  "--by", "carol")
    assert "must be signed: add --sign" in err
    err = refused(runbook_cli, isolated, run_id, "--gate", "cab", "--by", "alice",
                  "--ticket", "CHG-7")
    assert "the cab gate must be signed" in err
    # `notes` says signed: optional, over its checklist's policy.
    assert runbook_cli("approve", run_id, "--step", "checklist", "--item", "notes",
                       "--by", "carol").code == 0


def test_another_persons_key_and_the_starters_key_are_refused(isolated, keys, runbook_cli):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    err = refused(runbook_cli, isolated, run_id, "--gate", "cab", "--by", "alice",
                  "--ticket", "CHG-7", "--sign", str(keys["bob"]))
    assert "a key of bob, not one of alice's" in err
    # tester started the run: their key never counts, whoever's name is typed.
    err = refused(runbook_cli, isolated, run_id, "--gate", "cab", "--by", "alice",
                  "--ticket", "CHG-7", "--sign", str(keys["tester"]))
    assert "a key of tester, who started the run" in err
    # A key the inventory does not list at all.
    stranger = isolated / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    err = refused(runbook_cli, isolated, run_id, "--gate", "cab", "--by", "alice",
                  "--ticket", "CHG-7", "--sign", str(stranger))
    assert "a key the inventory does not list" in err


def sign_elsewhere(key: Path, payload: str, folder: Path, name: str) -> Path:
    """What a person does on their own machine: sign the payload with ssh-keygen."""
    path = folder / name
    path.write_text(payload)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n",
                    "runbook-approval", str(path)], check=True)
    return Path(f"{path}.sig")


def test_a_signature_over_another_payload_is_refused(isolated, keys, runbook_cli):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    at = "2026-01-02T03:04:05Z"
    gate = (run_id, "--gate", "cab", "--by", "alice", "--ticket", "CHG-7")
    payload = runbook_cli("approve", *gate, "--payload", "--at", at)
    assert payload.code == 0, payload.err
    signed = json.loads(payload.out)
    assert (signed["run"], signed["by"], signed["ticket"], signed["gate"]) == \
        (run_id, "alice", "CHG-7", "cab")
    # Over another plan hash.
    other_plan = json.dumps({**signed, "plan_hash": "0" * 64}, sort_keys=True) + "\n"
    sig = sign_elsewhere(keys["alice"], other_plan, isolated, "other-plan")
    err = refused(runbook_cli, isolated, *gate, "--signature", str(sig), "--at", at)
    assert "is not over this approval" in err
    # Over this payload, given with another ticket, or another time.
    sig = sign_elsewhere(keys["alice"], payload.out, isolated, "payload")
    assert "is not over this approval" in refused(
        runbook_cli, isolated, run_id, "--gate", "cab", "--by", "alice", "--ticket", "CHG-8",
        "--signature", str(sig), "--at", at)
    assert "is not over this approval" in refused(
        runbook_cli, isolated, *gate, "--signature", str(sig), "--at", "2026-01-02T03:04:06Z")
    # As signed, it counts.
    assert runbook_cli("approve", *gate, "--signature", str(sig), "--at", at).code == 0


def test_a_signature_replayed_on_another_run_is_refused(isolated, keys, runbook_cli):
    book = write(isolated, inventory(keys))
    first = start(runbook_cli, book)
    given = runbook_cli("approve", first, "--gate", "cab", "--by", "alice", "--ticket",
                        "CHG-7", "--sign", str(keys["alice"]))
    assert given.code == 0, given.err
    [stored] = runbook_cli("status", first, "--output", "json").json()["approvals"]
    runbook_cli("abort", first, "--by", "bob")
    second = start(runbook_cli, book)
    replayed = isolated / "replayed.sig"
    replayed.write_text(stored["signature"])
    err = refused(runbook_cli, isolated, second, "--gate", "cab", "--by", "alice",
                  "--ticket", "CHG-7", "--signature", str(replayed), "--at", stored["at"])
    assert "is not over this approval" in err


def test_an_approval_edited_in_the_store_is_caught_by_audit_verify(
        isolated, keys, runbook_cli):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    for person in ("alice", "bob"):
        assert runbook_cli("approve", run_id, "--gate", "cab", "--by", person, "--ticket",
                           "CHG-7", "--sign", str(keys[person])).code == 0
    assert runbook_cli("audit", "verify", "--full").code == 0
    state = Path(os.environ["RUNBOOK_HOME"]) / "state.db"
    for column, value, said in (("ticket", "CHG-999", "the stored ticket 'CHG-999' is not "
                                 "the signed 'CHG-7'"),
                                ("by_name", "carol", "its journal record is signed, the "
                                 "stored approval is not"),
                                # alice's signature, valid over her own payload, given as bob's
                                ("signed_sha256", "(SELECT signed_sha256 FROM approvals WHERE "
                                 "by_name = 'alice')",
                                 "its signature is not the one its journal record holds"),
                                # bob's signature kept once, its payload edited
                                ("signatures", "replace(payload, 'CHG-7', 'CHG-8')",
                                 "its signature is not the one its journal record holds")):
        original = state.read_bytes()
        db = sqlite3.connect(state)
        if column == "signatures":
            db.execute(f"UPDATE signatures SET payload = {value} WHERE sha256 = (SELECT "
                       "signed_sha256 FROM approvals WHERE by_name = 'bob')")
        elif value.startswith("("):
            db.execute(f"UPDATE approvals SET {column} = {value} WHERE by_name = 'bob'")
        else:
            db.execute(f"UPDATE approvals SET {column} = ? WHERE by_name = 'bob'", (value,))
        db.commit()
        db.close()
        verified = runbook_cli("audit", "verify", "--full")
        assert verified.code == 1, verified.out
        assert said in verified.out
        for leftover in state.parent.glob("state.db-*"):
            leftover.unlink()
        state.write_bytes(original)
    assert runbook_cli("audit", "verify", "--full").code == 0


def test_the_keys_a_run_starts_with_are_kept_once_and_an_edit_of_them_is_caught(
        isolated, keys, runbook_cli, tmp_path):
    book = write(isolated, inventory(keys))
    runs = [start(runbook_cli, book) for _ in range(2)]
    for person in ("alice", "bob"):
        assert runbook_cli("approve", runs[0], "--gate", "cab", "--by", person, "--ticket",
                           "CHG-7", "--sign", str(keys[person])).code == 0
    state = Path(os.environ["RUNBOOK_HOME"]) / "state.db"
    db = sqlite3.connect(state)
    starts = [json.loads(d) for (d,) in db.execute(
        "SELECT data FROM journal WHERE kind = 'run-start' ORDER BY seq")]
    [(digest, kept)] = db.execute("SELECT sha256, keys FROM keyrings").fetchall()
    # Both runs' start records name the one set by its hash; the set is kept once.
    assert [r["keyring"] for r in starts] == [digest, digest]
    assert not any("keys" in r for r in starts)
    assert json.loads(kept)["bob"] == [" ".join(public(keys["bob"]).split()[:2])]
    assert runbook_cli("audit", "verify", "--full").code == 0
    # bob's key swapped for another one in the kept set: its hash no longer matches.
    other = tmp_path / "mallory"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    db.execute("UPDATE keyrings SET keys = replace(keys, ?, ?)",
               (public(keys["bob"]).split()[1], public(other).split()[1]))
    db.commit()
    db.close()
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1, verified.out
    assert (f"keyring {digest[:12]}: the people's keys 2 run start records name are not in "
            "the store as they were") in verified.out, verified.out
    # The signatures made then are not taken as made with keys listed then.
    assert (f"approval of the cab gate of run {runs[0]} by bob: key SHA256:") in verified.out
    assert "was not listed for bob when the run started" in verified.out


def test_the_change_record_commands_verify_with_ssh_keygen_alone(
        isolated, keys, runbook_cli, tmp_path):
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket",
                       "CHG-7", "--note", "it's fine; \"quoted\"",
                       "--sign", str(keys["alice"])).code == 0
    record = runbook_cli("audit", "export", "--run", run_id).out
    script = record.split("```sh\n", 1)[1].split("```", 1)[0]
    folder = tmp_path / "by-hand"
    folder.mkdir()
    checked = subprocess.run(["bash", "-c", script], cwd=folder, capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stderr
    assert 'Good "runbook-approval" signature for alice' in checked.stdout + checked.stderr
    # The same commands over an edited payload fail.
    edited = script.replace('"CHG-7"', '"CHG-8"')
    assert subprocess.run(["bash", "-c", edited], cwd=folder,
                          capture_output=True).returncode != 0


def test_a_key_listed_for_two_people_refuses_the_inventory(isolated, keys, runbook_cli):
    data = inventory(keys)
    data["people"]["carol"]["keys"].append(public(keys["alice"]))
    book = write(isolated, data)
    result = runbook_cli("run", str(book))
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert "people.yaml:" in line and "is listed for both alice and carol" in line
    assert runbook_cli("status", "--output", "json").json() == []
    # Through a keys file too, naming that file and its line.
    data = inventory(keys)
    (isolated / "carol.keys").write_text(f"# carol's keys\n{public(keys['carol'])}\n"
                                         f"{public(keys['bob'])}\n")
    data["people"]["carol"] = {"roles": ["qa"], "keys_file": "carol.keys"}
    result = runbook_cli("run", str(write(isolated, data)))
    assert result.code == 2
    assert "carol.keys:3:" in result.err and "both bob and carol" in result.err


def test_a_keys_file_lists_a_persons_keys(isolated, keys, runbook_cli):
    data = inventory(keys)
    (isolated / "alice.keys").write_text(f"{public(keys['alice'])}\n")
    data["people"]["alice"] = {"roles": ["cab"], "keys_file": "alice.keys"}
    run_id = start(runbook_cli, write(isolated, data))
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket",
                       "CHG-7", "--sign", str(keys["alice"])).code == 0


def test_the_default_key_is_found_in_ssh_folder(isolated, keys, runbook_cli, tmp_path,
                                                 monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for suffix in ("", ".pub"):
        (home / ".ssh" / f"id_ed25519{suffix}").write_bytes(
            Path(f"{keys['alice']}{suffix}").read_bytes())
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    given = runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket",
                        "CHG-7", "--sign")
    assert given.code == 0, given.err
    # bob has no key there: said, nothing recorded.
    assert "none of bob's keys" in refused(runbook_cli, isolated, run_id, "--gate", "cab",
                                           "--by", "bob", "--ticket", "CHG-7", "--sign")


def test_a_key_in_the_ssh_agent_signs(isolated, keys, runbook_cli, tmp_path, monkeypatch):
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")],
                           capture_output=True, text=True, check=True).stdout
    pid = int(agent.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
        subprocess.run(["ssh-add", "-q", str(keys["bob"])], check=True, capture_output=True)
        run_id = start(runbook_cli, write(isolated, inventory(keys)))
        # The public key file names the key; its private half is the agent's.
        given = runbook_cli("approve", run_id, "--gate", "cab", "--by", "bob", "--ticket",
                            "CHG-7", "--sign", f"{keys['bob']}.pub")
        assert given.code == 0, given.err
        (Path(f"{keys['bob']}")).unlink()  # only the agent holds it now
        again = runbook_cli("approve", run_id, "--gate", "cab", "--by", "bob", "--ticket",
                            "CHG-8", "--sign")
        assert again.code == 0, again.err
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_while_verifying_leaves_nothing_recorded(sig, isolated, keys, runbook_cli,
                                                        tmp_path):
    """A stand-in ssh-keygen first on PATH (the real one signs) says when it is verifying,
    then waits there: the runbook process gets the signal at that point, between signing and
    recording; given again, the approval is recorded once."""
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "verifying"
    stand_in = bin_dir / "ssh-keygen"
    stand_in.write_text(f"""#!/bin/sh
case " $* " in *" verify "*) : > {marker}; exec sleep 600;; esac
exec /usr/bin/ssh-keygen "$@"
""")
    stand_in.chmod(0o755)
    before = store_rows(isolated)
    proc = runbook_process("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket",
                           "CHG-7", "--sign", str(keys["alice"]),
                           env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60  # bounds a failing test only
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "never reached the verification"
            time.sleep(0.02)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:  # Ctrl-C or SIGTERM to runbook alone: it ends what it started, exit 130
            proc.send_signal(sig)
            proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert store_rows(isolated) == before
    assert runbook_cli("audit", "verify", "--full").code == 0
    # The same approval, given again, is recorded once.
    assert runbook_cli("approve", run_id, "--gate", "cab", "--by", "alice", "--ticket",
                       "CHG-7", "--sign", str(keys["alice"])).code == 0
    assert len(store_rows(isolated)[0]) == len(before[0]) + 1


def test_the_sandbox_gives_its_people_keys_and_the_demo_flow_signs(sandbox, runbook_cli):
    """As scripts/demo.sh does: promote uat1 → staging in the sandbox, alice and bob sign
    their attestations with the keys `runbook sandbox up` generated."""
    folder = Path(sandbox["inventory"]).parent / "keys"
    listed = yaml.safe_load(Path(sandbox["inventory"]).read_text())["people"]
    for person in ("alice", "bob", "tester"):
        assert (folder / person).stat().st_mode & 0o777 == 0o600
        assert listed[person]["keys"] == [(folder / f"{person}.pub").read_text().strip()]
    first = runbook_cli("run", "promote", "--from", "uat1", "--to", "staging")
    assert first.code == 3, first.out + first.err
    run_id = first.out.split()[1]
    items = {"alice": ["uat-signoff", "acceptance-criteria", "release-notes"],
             "bob": ["documentation", "runbook-reviewed", "rollback-plan"]}
    for person, mine in items.items():
        args = [a for item in mine for a in ("--item", item)]
        given = runbook_cli("approve", run_id, "--step", "checklist", "--by", person, *args,
                            "--sign", str(folder / person))
        assert given.code == 0, given.err
    assert runbook_cli("resume", run_id).code == 0
    approvals = runbook_cli("status", run_id, "--output", "json").json()["approvals"]
    assert len(approvals) == 6 and all(a["fingerprint"] for a in approvals)
    assert runbook_cli("audit", "verify", "--full").code == 0


def test_on_postgresql_a_signed_approval_counts_and_an_edited_one_is_caught(
        isolated, keys, runbook_cli, request, tmp_path, monkeypatch):
    """The same store code on a shared PostgreSQL server: signatures stored, verified again
    by `audit verify`, an approval edited in the database reported."""
    import psycopg

    from tests.store.test_store import store_location

    location = store_location("postgres", request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    run_id = start(runbook_cli, write(isolated, inventory(keys)))
    assert runbook_cli("approve", run_id, "--step", "checklist", "--item", "tests",
                       "--item", "notes", "--by", "carol", "--sign", str(keys["carol"])).code == 0
    for person in ("alice", "bob"):
        assert runbook_cli("approve", run_id, "--gate", "cab", "--by", person, "--ticket",
                           "CHG-7", "--sign", str(keys[person])).code == 0
    assert runbook_cli("resume", run_id).code == 0
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 0 and verified.out.startswith("journal intact"), verified.out
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute("UPDATE approvals SET ticket = 'CHG-999' WHERE by_name = 'bob'")
    verified = runbook_cli("audit", "verify", "--full")
    assert verified.code == 1, verified.out
    assert "the stored ticket 'CHG-999' is not the signed 'CHG-7'" in verified.out
