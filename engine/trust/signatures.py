"""Signed approvals: what a person's SSH signature covers, when the inventory requires one,
how ``runbook approve`` checks it before anything is recorded, and how ``runbook audit
verify`` checks every stored one again.

A signature is over a payload: one line of canonical JSON (sorted keys, then a newline)
naming the run (or the plan), the run's plan hash, the step and items or the gate, the
person, the gate's role, the ticket, the note and the time. Anyone can rebuild it from the
change record and check it with ``ssh-keygen -Y verify``. What a signature proves: the
holder of a key the inventory lists for that person approved exactly this; not that the key
was not stolen, nor that the inventory listing it was not rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.store import ApprovalRecord, JournalRecord, StateStore
from engine.store.chain import dumps
from engine.store.records import recorded_signature, start_keys
from engine.trust import keys as keys_mod
from engine.trust import sshsig

PAYLOAD_VERSION = "runbook-approval/v1"
REQUIRED = "required"


def apply_checklist_policy(inventory: dict[str, Any]) -> None:
    """``approvals.signed_checklists: {NAME: required}`` marks each attested item and gate of
    that checklist ``signed: required`` (an item's own ``signed`` stays), so the policy goes
    wherever a runbook renders the items."""
    policy = (inventory.get("approvals") or {}).get("signed_checklists") or {}
    for name, level in policy.items():
        for entry in (inventory.get("checklists") or {}).get(name) or ():
            if isinstance(entry, dict) and "check" not in entry:
                entry.setdefault("signed", level)


@dataclass(frozen=True)
class Signing:
    """How a person signs an approval: ``key`` (a private key file, or a public key file
    whose private half the ssh-agent holds; '' for their first listed key found in ~/.ssh or
    the agent), or ``signature`` (armored text they made elsewhere over the payload)."""

    key: str | None = None
    signature: str | None = None


def payload(approvals: Sequence[ApprovalRecord], *, run_plan_hash: str,
            role: str = "") -> bytes:
    """What the person signs for ``approvals`` (given together by one command)."""
    first = approvals[0]
    gate = first.item if not first.step_id else ""
    doc = {"payload": PAYLOAD_VERSION, "run": first.run_id,
           "plan_hash": run_plan_hash if first.run_id else first.plan_hash,
           "step": first.step_id, "items": [a.item for a in approvals] if first.step_id else [],
           "gate": gate, "by": first.by, "role": role, "ticket": first.ticket,
           "note": first.note, "at": first.at}
    return (dumps(doc) + "\n").encode()


@dataclass(frozen=True)
class Signers:
    """Whose keys count: each person's, and the run's starter (who never approves it)."""

    keys: Mapping[str, tuple[str, ...]]
    starter: str = ""
    starter_keys: tuple[str, ...] = ()


def sign(approvals: Sequence[ApprovalRecord], signing: Signing, signers: Signers, *,
         run_plan_hash: str, role: str, what: str, needed: bool) -> list[ApprovalRecord]:
    """``approvals`` with their signature, checked as ``audit verify`` will check it; or
    InvalidInput (nothing is recorded) if one is needed and missing, or does not prove that
    this person approved exactly this."""
    person = approvals[0].by
    if signing.key is None and signing.signature is None:
        if needed:
            raise InvalidInput(f"{what} must be signed: add --sign [KEY] (an SSH key the "
                               f"inventory lists for {person})")
        return list(approvals)
    listed = signers.keys.get(person, ())
    data = payload(approvals, run_plan_hash=run_plan_hash, role=role)
    if signing.signature is not None:
        text = signing.signature
    else:
        if not listed:
            raise InvalidInput(f"the inventory lists no SSH key for {person}: add one under "
                               f"people.{person}.keys to sign")
        text = sshsig.sign(data, _key_to_use(signing.key or "", listed, person))
    try:
        key = sshsig.signer(text)
    except ValueError as exc:
        raise InvalidInput(f"the signature: {exc}") from exc
    problem = key_problem(key, person, signers)
    if problem:
        raise InvalidInput(problem)
    failed = sshsig.verify(data, text, person, [key.line])
    if failed:
        raise InvalidInput(f"the signature by {person}'s key {key.fingerprint} is not over "
                           f"this approval (another run, plan hash, item, ticket or time): "
                           f"{failed}")
    return [replace(a, signature=text, signer_key=key.line, fingerprint=key.fingerprint,
                    payload=data.decode()) for a in approvals]


def key_problem(key: sshsig.PublicKey, person: str, signers: Signers) -> str:
    """Why a signature made with ``key`` cannot stand for ``person``'s approval, or ''."""
    if key.line in signers.starter_keys or (
            signers.starter and key.line in signers.keys.get(signers.starter, ())):
        return (f"the signature was made with {key.fingerprint}, a key of {signers.starter}, "
                "who started the run: the starter never approves their own run")
    if key.line in signers.keys.get(person, ()):
        return ""
    owner = keys_mod.owner_of(key.line, signers.keys)
    whose = f"a key of {owner}" if owner else "a key the inventory does not list"
    return f"the signature was made with {key.fingerprint}, {whose}, not one of {person}'s"


def _key_to_use(given: str, listed: Sequence[str], person: str) -> Path | sshsig.PublicKey:
    """The key file given, else the first of the person's keys that ~/.ssh/id_* holds (with
    its private half beside it) or the ssh-agent holds."""
    if given:
        return Path(given).expanduser()
    files: dict[str, Path] = {}
    for pub in sorted((Path.home() / ".ssh").glob("id_*.pub")):
        try:
            line = sshsig.parse_key(pub.read_text()).line
        except (OSError, ValueError):
            continue
        if pub.with_suffix("").is_file():
            files.setdefault(line, pub.with_suffix(""))
    agent = {k.line: k for k in sshsig.agent_keys()}
    for line in listed:
        if line in files:
            return files[line]
        if line in agent:
            return agent[line]
    raise InvalidInput(f"none of {person}'s keys in the inventory is in ~/.ssh/id_* or the "
                       "ssh-agent: give the key file, --sign PATH")


# -- audit verify ---------------------------------------------------------------------------

KeysOf = Callable[[str], Mapping[str, Sequence[str]]]


def check(store: StateStore, keys_now: KeysOf, runs: set[str] | None = None) -> list[str]:
    """Every stored signature checked again: over its payload, by a key the inventory listed
    for that person when the run started (as its ``run-start`` journal record holds them;
    ``keys_now(run_id)`` for a run started before keys were recorded), and its payload
    still saying what the approval row and its journal record say (person, ticket, item,
    run, plan hash, time). An approval whose journal record is signed and whose row is not
    (its signature removed) is reported too. ``runs``: only the approvals of those runs
    (``""``: the plans'), read from their own journal records."""
    records = store.scan_journal(kinds=("run-start", "approval")) if runs is None else \
        (record for run_id in sorted(runs) for record in store.journal(run_id))
    recorded, plan_keys, journaled, lost = _from_journal(records, store.keyring)
    problems = [f"keyring {digest[:12]}: the people's keys {count} run start record"
                f"{'s name' if count > 1 else ' names'} are not in the store as they were "
                "(the keyrings table was edited)" for digest, count in sorted(lost.items())]
    rows = [row for row in store.signed_approvals() if runs is None or row.run_id in runs]
    seen = set()
    for row in rows:
        seen.add(_ident(row))
        where = _where(row)
        run = store.get_run(row.run_id) if row.run_id else None
        run_plan = run.plan_hash if run else ""
        # A plan approval no run has used yet is checked against the keys of the first run
        # with its plan hash, once there is one.
        allowed = (recorded[row.run_id] if row.run_id in recorded else
                   keys_now(row.run_id)) if row.run_id else plan_keys.get(row.plan_hash)
        problems += [f"{where}: {p}" for p in _check_one(row, run_plan, allowed)]
        signed_in_journal = journaled.get(_ident(row))
        if signed_in_journal is not None and signed_in_journal != row.signed_sha256():
            problems.append(f"{where}: its signature is not the one its journal record holds")
    for ident in journaled:
        if ident not in seen:
            problems.append(f"{_where_ident(ident)}: its journal record is signed, the "
                            "stored approval is not (its signature was removed, or the "
                            "approval edited or deleted)")
    return problems


def _check_one(row: ApprovalRecord, run_plan: str,
               allowed: Mapping[str, Sequence[str]] | None) -> list[str]:
    try:
        signed = json.loads(row.payload)
        key = sshsig.signer(row.signature)
    except ValueError as exc:
        return [f"its signature or payload cannot be read ({exc})"]
    problems = []
    if key.line != row.signer_key:
        problems.append("the signature was not made with the key stored with it")
    expected = {"run": row.run_id, "plan_hash": run_plan if row.run_id else row.plan_hash,
                "step": row.step_id, "by": row.by, "ticket": row.ticket, "note": row.note,
                "at": row.at, "gate": "" if row.step_id else row.item}
    for field, value in expected.items():
        if signed.get(field) != value:
            problems.append(f"the stored {field} {value!r} is not the signed "
                            f"{signed.get(field)!r}")
    if row.step_id and row.item not in signed.get("items", []):
        problems.append(f"the stored item {row.item!r} is not among the signed ones")
    if allowed is not None and row.signer_key not in allowed.get(row.by, ()):
        problems.append(f"key {row.fingerprint} was not listed for {row.by} when the run "
                        "started")
    failed = sshsig.verify(row.payload.encode(), row.signature, row.by, [row.signer_key])
    if failed:
        problems.append(f"the signature does not verify: {failed}")
    return problems


def _from_journal(records: Iterable[JournalRecord],
                  keyring: Callable[[str], dict[str, list[str]] | None]) -> tuple[
        dict[str, Mapping[str, Sequence[str]]], dict[str, Mapping[str, Sequence[str]]],
        dict[tuple[str, ...], str], dict[str, int]]:
    """The people's keys recorded at each run's start (by run, and by the run's plan hash;
    {} for a set the store no longer holds as it was), the hash of the signature each
    signed approval record gives, and the sets not held as they were (how many runs name
    each)."""
    lost: dict[str, int] = {}
    by_run: dict[str, Mapping[str, Sequence[str]]] = {}
    by_plan: dict[str, Mapping[str, Sequence[str]]] = {}
    shared: dict[str, Mapping[str, Sequence[str]]] = {}  # runs mostly share one set of keys
    signed: dict[tuple[str, ...], str] = {}
    for record in records:
        if record.kind == "run-start" and ("keys" in record.data or "keyring" in record.data):
            named = str(record.data.get("keyring") or dumps(record.data.get("keys")))
            if named not in shared:
                shared[named] = start_keys(record.data, keyring) or {}
            found = shared[named]
            if not found:
                lost[named] = lost.get(named, 0) + 1
            by_run[record.run_id] = found
            by_plan.setdefault(str(record.data.get("plan_hash") or ""), found)
        elif record.kind == "approval" and (digest := recorded_signature(record.data)):
            data = record.data
            signed[(record.run_id, str(data.get("plan_hash", "")), str(data.get("step_id", "")),
                    str(data.get("item", "")), str(data.get("by", "")))] = digest
    return by_run, by_plan, signed, lost


def _ident(row: ApprovalRecord) -> tuple[str, ...]:
    return (row.run_id, row.plan_hash, row.step_id, row.item, row.by)


def _where(row: ApprovalRecord) -> str:
    return _where_ident(_ident(row))


def _where_ident(ident: tuple[str, ...]) -> str:
    run_id, plan_hash, step, item, by = ident
    whose = f"run {run_id}" if run_id else f"plan {plan_hash[:12]}"
    what = f"step {step} item {item}" if step and item else f"step {step}" if step else \
        f"the {item} gate"
    return f"approval of {what} of {whose} by {by}"


# -- the change record ------------------------------------------------------------------------

def signed_groups(approvals: Iterable[ApprovalRecord]) -> list[ApprovalRecord]:
    """One approval for each signature (a command that attests several items signs once)."""
    return list({a.signature: a for a in approvals if a.signature}.values())


def by_hand(approval: ApprovalRecord) -> str:
    """Shell commands that check a stored signature with ssh-keygen alone, in an empty
    folder: they write the allowed_signers line, the exact payload and the signature, then
    verify. (Whether the key is the person's is for the reader to compare with the
    inventory, by its fingerprint.)"""
    person = sshsig.principal(approval.by)
    return "\n".join([
        "cat > allowed_signers <<'EOF'",
        sshsig.allowed_signers(approval.by, [approval.signer_key]).rstrip("\n"),
        "EOF",
        "cat > payload <<'EOF'",
        approval.payload.rstrip("\n"),
        "EOF",
        "cat > payload.sig <<'EOF'",
        approval.signature.rstrip("\n"),
        "EOF",
        f"ssh-keygen -Y verify -f allowed_signers -I {person} -n {sshsig.NAMESPACE} "
        "-s payload.sig < payload"])
