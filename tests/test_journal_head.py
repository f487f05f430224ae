"""A journal head signed with a real ``ssh-keygen`` key and kept outside the store: it finds
a chain rewritten and hashed again, or cut short, and is refused when a key the allowed
signers do not list signed it; a ``sign-head`` killed mid-way leaves no half-written file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.store.chain import GENESIS, dumps, record_hash
from tests.conftest import runbook_process
from tests.helpers import append_step
from tests.store.test_store import store_location
from tests.test_locks_audit import locked_book, tamper


@pytest.fixture(params=["sqlite", "postgres"])
def state_at(request, tmp_path, monkeypatch) -> str:
    """The store every command of the test uses, on each backend."""
    location = store_location(request.param, request, tmp_path)
    monkeypatch.setenv("RUNBOOK_STATE", location)
    return location


def keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key


def allowed(folder: Path, *people: tuple[str, Path]) -> Path:
    path = folder / "allowed_signers"
    path.write_text("".join(f"{who} {Path(f'{key}.pub').read_text().strip()}\n"
                            for who, key in people))
    return path


def a_done_run(write_runbook, runbook_cli) -> None:
    path = write_runbook(locked_book(append_step("a"), append_step("b"), append_step("c")))
    assert runbook_cli("run", str(path)).code == 0


def rehash_from(location: str, seq: int, edit: dict[str, str]) -> None:
    """Edit record ``seq``'s data and hash it and every record after it again, as someone
    able to write the whole store could: the chain alone checks as intact after it."""
    if location.startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(location, autocommit=True)
        mark = "%s"
    else:
        import sqlite3

        conn = sqlite3.connect(location, isolation_level=None)  # type: ignore[assignment]
        mark = "?"
    rows = conn.execute("SELECT seq, at, run_id, kind, data, hash FROM journal "
                        "ORDER BY seq").fetchall()
    prev = GENESIS
    for number, at, run_id, kind, data, kept in rows:
        if number < seq:
            prev = kept
            continue
        values = json.loads(data)
        if number == seq:
            values.update(edit)
        digest = record_hash(prev, number, at, run_id, kind, values)
        conn.execute(f"UPDATE journal SET data = {mark}, hash = {mark} "
                     f"WHERE seq = {mark}", (dumps(values), digest, number))
        prev = digest
    conn.close()


def test_a_signed_head_verifies_and_counts_the_records_after_it(state_at, write_runbook,
                                                                 runbook_cli, tmp_path):
    a_done_run(write_runbook, runbook_cli)
    key = keypair(tmp_path, "alice")
    head = tmp_path / "head.txt"
    signed = runbook_cli("audit", "sign-head", "--key", str(key), "--file", str(head))
    assert signed.code == 0, signed
    assert "BEGIN SSH SIGNATURE" in head.read_text()
    assert "PRIVATE KEY" not in head.read_text() + signed.out + signed.err
    records = runbook_cli("audit", "verify", "--full", "--output", "json").json()["records"]
    a_done_run(write_runbook, runbook_cli)
    signers = allowed(tmp_path, ("alice@example.com", key))
    verified = runbook_cli("audit", "verify", "--full", "--head", str(head), "--allowed-signers",
                           str(signers))
    assert verified.code == 0, verified
    assert (f"head {head} (signed by alice@example.com, " in verified.out
            and f"record {records} is where it was; 7 records came after it" in verified.out)
    by_key = runbook_cli("audit", "verify", "--full", "--head", str(head), "--key", f"{key}.pub")
    assert by_key.code == 0, by_key


@pytest.mark.parametrize("damage", ["rewritten", "truncated"])
def test_a_signed_head_finds_a_rewritten_or_truncated_chain(damage, state_at,
                                                            write_runbook, runbook_cli,
                                                            tmp_path):
    a_done_run(write_runbook, runbook_cli)
    key = keypair(tmp_path, "alice")
    head = tmp_path / "head.txt"
    assert runbook_cli("audit", "sign-head", "--key", str(key), "--file", str(head)).code == 0
    records = runbook_cli("audit", "verify", "--full", "--output", "json").json()["records"]
    if damage == "rewritten":
        # Who made record 2: a field no table holds, so only the anchored head can tell.
        rehash_from(state_at, 2, {"host": "elsewhere"})
        assert runbook_cli("audit", "verify", "--full").code == 0  # the chain alone cannot tell
        says = (f"journal: record {records}: its hash ", "is not the anchored head's",
                "(the journal was rewritten up to it)")
    else:
        tamper(state_at, f"DELETE FROM journal WHERE seq > {records - 3}")
        says = (f"journal: record {records} (the anchored head) is not in the journal, which "
                f"ends at record {records - 3}", "(truncated)")
    verified = runbook_cli("audit", "verify", "--full", "--head", str(head), "--key", f"{key}.pub")
    assert verified.code == 1, verified
    assert all(part in verified.out for part in says), verified.out


def test_a_head_signed_by_a_key_not_allowed_is_refused(write_runbook, runbook_cli, tmp_path):
    a_done_run(write_runbook, runbook_cli)
    alice, mallory = keypair(tmp_path, "alice"), keypair(tmp_path, "mallory")
    head = tmp_path / "head.txt"
    assert runbook_cli("audit", "sign-head", "--key", str(mallory), "--file",
                       str(head)).code == 0
    signers = allowed(tmp_path, ("alice@example.com", alice))
    refused = runbook_cli("audit", "verify", "--full", "--head", str(head), "--allowed-signers",
                          str(signers))
    assert refused.code == 2 and refused.out == ""
    assert refused.err == (f"runbook: error: {head}: the journal head is signed by a key "
                           f"{signers} does not list: refused\n")
    by_key = runbook_cli("audit", "verify", "--full", "--head", str(head), "--key", f"{alice}.pub")
    assert by_key.code == 2 and "signature does not verify" in by_key.err
    unchecked = runbook_cli("audit", "verify", "--full", "--head", str(head))
    assert unchecked.code == 2 and "give --allowed-signers FILE or --key PUBKEY" in unchecked.err


def test_a_signed_head_edited_after_signing_is_refused(write_runbook, runbook_cli, tmp_path):
    a_done_run(write_runbook, runbook_cli)
    key = keypair(tmp_path, "alice")
    head = tmp_path / "head.txt"
    assert runbook_cli("audit", "sign-head", "--key", str(key), "--file", str(head)).code == 0
    text = head.read_text()
    records = int(text.split("records: ")[1].split()[0])
    head.write_text(text.replace(f"records: {records}\n", f"records: {records - 1}\n"))
    refused = runbook_cli("audit", "verify", "--full", "--head", str(head), "--key", f"{key}.pub")
    assert refused.code == 2 and "signature does not verify" in refused.err, refused


def test_sign_head_refuses_a_journal_that_is_not_intact(state_at, write_runbook,
                                                        runbook_cli, tmp_path):
    a_done_run(write_runbook, runbook_cli)
    tamper(state_at, "UPDATE runs SET status = 'failed'")
    head = tmp_path / "head.txt"
    refused = runbook_cli("audit", "sign-head", "--key", str(keypair(tmp_path, "alice")),
                          "--file", str(head))
    assert refused.code == 1 and "the journal is not intact" in refused.err
    assert not head.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_sign_head_killed_mid_way_leaves_the_head_file_as_it_was(sig, write_runbook,
                                                                  runbook_cli, tmp_path):
    a_done_run(write_runbook, runbook_cli)
    out = tmp_path / "heads"
    out.mkdir()
    head = out / "head.txt"
    key = keypair(tmp_path, "alice")
    assert runbook_cli("audit", "sign-head", "--key", str(key), "--file", str(head)).code == 0
    before = head.read_bytes()
    a_done_run(write_runbook, runbook_cli)
    # The key is a FIFO: ssh-keygen opens it and waits for a writer, so the command is held
    # between reading the journal and writing the head, until it is killed there.
    fifo = tmp_path / "held-key"
    os.mkfifo(fifo, 0o600)
    proc = runbook_process("audit", "sign-head", "--key", str(fifo), "--file", str(head),
                           start_new_session=True)
    writer = None
    deadline = time.monotonic() + 60  # bounds a failing test only
    try:
        while writer is None:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # once ssh-keygen reads it
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "ssh-keygen never opened the key"
                time.sleep(0.01)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)  # the command and its ssh-keygen
        else:  # Ctrl-C or SIGTERM to runbook alone: it ends its ssh-keygen, exit 130
            proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if writer is not None:
            os.close(writer)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert head.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["head.txt"]  # no temporary file left
