"""The journal's head, kept outside the store: which store (its first record's hash), how
many records it had and its last record's hash, signed with an SSH key by ``ssh-keygen``.

Anyone able to write the store can rewrite the whole chain, or cut its end off, and the
chain still checks. A head kept in the change ticket anchors it: ``audit verify --head``
finds the anchored record where it was, with its hash, or says what changed. The signature
(namespace ``runbook-journal-head``) proves who anchored it; an unsigned head anchors the
position alone. The head file is written whole or not at all (a temporary file renamed), and
a private key only ever goes to ``ssh-keygen`` by its path.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput
from engine.trust import sshsig

NAMESPACE = "runbook-journal-head"
TITLE = "runbook journal head 1"
SIGNATURE_START = "-----BEGIN SSH SIGNATURE-----"
SIGNATURE_END = "-----END SSH SIGNATURE-----"
_HASH = re.compile(r"[0-9a-f]{64}")
FIELDS = ("store", "records", "head", "at")


@dataclass(frozen=True)
class Head:
    """What a head file says: the store (its first record's hash), the last record's
    sequence number and hash, when it was taken, and the signature if it is signed."""

    store: str
    records: int
    head: str
    at: str
    signature: str = ""

    def text(self) -> str:
        """The canonical text: what is signed, and what an unsigned head file holds."""
        return (f"{TITLE}\nstore: {self.store}\nrecords: {self.records}\nhead: {self.head}\n"
                f"at: {self.at}\n")

    def file_text(self) -> str:
        return self.text() + self.signature


def parse(text: str, *, where: str) -> Head:
    """A head file, signed or not; InvalidInput naming what is wrong with it."""
    payload, marker, rest = text.partition(SIGNATURE_START)
    lines = payload.splitlines()
    if not lines or lines[0] != TITLE:
        raise InvalidInput(f"not a journal head file (its first line should be {TITLE!r})",
                           file=where)
    values: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(": ")
        if not sep or name not in FIELDS or name in values:
            raise InvalidInput(f"unexpected line in the journal head: {line[:60]!r}",
                               file=where)
        values[name] = value
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise InvalidInput(f"the journal head has no {', '.join(missing)} line", file=where)
    if not _HASH.fullmatch(values["store"]) or not _HASH.fullmatch(values["head"]):
        raise InvalidInput("the journal head's store and head must be SHA-256 hashes "
                           "(64 hexadecimal digits)", file=where)
    if not values["records"].isdigit() or int(values["records"]) < 1:
        raise InvalidInput("the journal head's records must be a positive whole number",
                           file=where)
    if marker and SIGNATURE_END not in rest:
        raise InvalidInput("the journal head's signature has no end line", file=where)
    head = Head(values["store"], int(values["records"]), values["head"], values["at"],
                marker + rest if marker else "")
    if head.text() != payload:  # a signature covers exactly the canonical text
        raise InvalidInput("the journal head is not in its canonical form (as "
                           "`runbook audit sign-head` or `--print-head` write it)", file=where)
    return head


def sign(head: Head, key: Path) -> Head:
    """The head signed with ``key`` (a private key, or a public key whose private half the
    ssh-agent holds)."""
    if not key.exists():
        raise InvalidInput(f"no key file at {key}", file=str(key))
    signature = sshsig.sign(head.text().encode(), key, namespace=NAMESPACE)
    if SIGNATURE_START not in signature:
        raise InvalidInput(f"ssh-keygen could not sign the journal head with {key}")
    return Head(head.store, head.records, head.head, head.at, signature)


def check_signature(head: Head, *, allowed_signers: Path | None, key: Path | None,
                    where: str) -> str:
    """Who signed the head (their name in the allowed signers, or the key's file); raises
    InvalidInput if it is unsigned, or not signed by an allowed key over this text."""
    if not head.signature:
        raise InvalidInput("the journal head is not signed, but a signature check was asked "
                           "for (--allowed-signers or --key)", file=where)
    with tempfile.TemporaryDirectory(prefix="runbook-head-") as folder:
        sig = Path(folder) / "head.sig"
        sig.write_text(head.signature)
        if key is not None:
            signers = Path(folder) / "allowed_signers"
            signers.write_text(f"head-signer {_public_key(key)}\n")
            principal, shown = "head-signer", str(key)
        else:
            if allowed_signers is None or not allowed_signers.is_file():
                raise InvalidInput("no allowed signers file here", file=str(allowed_signers))
            signers = allowed_signers
            found = sshsig.keygen(["-Y", "find-principals", "-s", str(sig), "-f",
                                   str(signers)])
            names = found.stdout.decode(errors="replace").split()
            if found.returncode != 0 or not names:
                raise InvalidInput(f"the journal head is signed by a key {signers} does not "
                                   "list: refused", file=where)
            principal = shown = names[0]
        done = sshsig.keygen(["-Y", "verify", "-f", str(signers), "-I", principal, "-n",
                              NAMESPACE, "-s", str(sig)], head.text().encode())
        if done.returncode != 0:
            raise InvalidInput(f"the journal head's signature does not verify against "
                               f"{shown} ({sshsig.said(done)}): refused", file=where)
    return shown


def _public_key(path: Path) -> str:
    """The one public key a --key file holds (as in a .pub file or allowed_signers)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the public key: {exc}", file=str(path)) from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise InvalidInput("not a public key (give the .pub file, one key)", file=str(path))
    return lines[0]


def write(path: Path, text: str) -> None:
    """Write the whole file or leave what was there: a temporary file beside it, synced,
    then renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # a head is meant to be shared, unlike mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power loss
    finally:
        os.close(folder)
