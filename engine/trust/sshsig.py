"""SSH signatures through OpenSSH's own ``ssh-keygen -Y``: the one adapter for ssh-keygen and
ssh-add. A person signs with the key they already use for git and servers (a key file, or
their ssh-agent), and anyone can check a signature later with the same tool, by hand.

Every value reaches ssh-keygen as an argv list or on its standard input, never through a
shell. Private keys are never read here: ssh-keygen reads them (or asks the agent).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput, RunbookError

NAMESPACE = "runbook-approval"  # a signature made for runbook is no git or file signature
KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com"})
# A principal ssh-keygen's allowed_signers file reads as one plain name (no pattern, quote or
# list separator); another person's name is written as SIGNER.
_PLAIN_PRINCIPAL = re.compile(r"^[A-Za-z0-9._@+-]+$")
SIGNER = "signer"
_ARMOR = ("-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----")


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str = ""

    @property
    def line(self) -> str:
        """The key as an authorized_keys line without its comment: what identifies it."""
        return f"{self.type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` shows it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"


def parse_key(text: str) -> PublicKey:
    """A public key line (``ssh-ed25519 AAAA… comment``); ValueError saying what is wrong."""
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key: list public keys only (the .pub file)")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise ValueError("not a public key: expected TYPE BASE64 [COMMENT], such as "
                         "ssh-ed25519 AAAA… alice@laptop")
    kind, data = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ValueError(f"unknown key type {kind[:40]!r} (known: {', '.join(sorted(KEY_TYPES))})")
    try:
        blob = base64.b64decode(data, validate=True)
        inner, _ = _string(blob, 0)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {kind} key is not valid base64 key data") from None
    if inner.decode(errors="replace") != kind:
        raise ValueError(f"the key data is of type {inner.decode(errors='replace')[:40]!r}, "
                         f"not {kind}")
    return PublicKey(kind, blob, parts[2].strip() if len(parts) > 2 else "")


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    """An SSH wire-format string (a 32-bit length, then the bytes) and where the next starts."""
    if at + 4 > len(data):
        raise ValueError("truncated")
    size = int.from_bytes(data[at:at + 4], "big")
    if at + 4 + size > len(data):
        raise ValueError("truncated")
    return data[at + 4:at + 4 + size], at + 4 + size


def signer(signature: str) -> PublicKey:
    """The public key an armored SSH signature names as its signer (not yet verified), from
    the SSHSIG blob: magic, version, public key, namespace, …; ValueError if it is none."""
    lines = [line.strip() for line in signature.strip().splitlines()]
    if len(lines) < 3 or (lines[0], lines[-1]) != _ARMOR:
        raise ValueError("not an SSH signature (-----BEGIN SSH SIGNATURE----- … from "
                         "ssh-keygen -Y sign)")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        if blob[:6] != b"SSHSIG":
            raise ValueError
        key, at = _string(blob, 10)
        namespace, _ = _string(blob, at)
        kind, _ = _string(key, 0)
    except (binascii.Error, ValueError):
        raise ValueError("not an SSH signature: its data cannot be read") from None
    if namespace.decode(errors="replace") != NAMESPACE:
        raise ValueError(f"the signature is for namespace "
                         f"{namespace.decode(errors='replace')[:40]!r}, not {NAMESPACE} "
                         f"(sign with -n {NAMESPACE})")
    return PublicKey(kind.decode(errors="replace"), key)


def principal(person: str) -> str:
    """The name a person's keys carry in an allowed_signers file."""
    return person if _PLAIN_PRINCIPAL.match(person) else SIGNER


def allowed_signers(person: str, keys: Sequence[str]) -> str:
    """An allowed_signers file (ssh-keygen(1)) that lets ``keys`` sign as ``person``."""
    return "".join(f'{principal(person)} namespaces="{NAMESPACE}" {key}\n' for key in keys)


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RunbookError(f"{name} is not installed (OpenSSH 8.2 or newer signs and verifies "
                           "approvals): install openssh-client")
    return found


def keygen(argv: Sequence[str], payload: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen ARGV`` with ``payload`` on its standard input."""
    return subprocess.run([_program("ssh-keygen"), *argv], input=payload, capture_output=True,
                          check=False)


def sign(payload: bytes, key: Path | PublicKey, *, namespace: str = NAMESPACE) -> str:
    """``payload`` signed with ``key``: a private key file, a public key file whose private
    half the ssh-agent holds, or a key of the agent's. ssh-keygen may ask for the key's
    passphrase on the terminal."""
    with tempfile.TemporaryDirectory(prefix="runbook-sign-") as scratch:
        if isinstance(key, PublicKey):  # ssh-keygen finds the private half in the agent
            path = Path(scratch) / "key.pub"
            path.write_text(key.line + "\n")
        else:
            path = key
            if not path.exists() or path.is_dir():  # a pipe or a device is ssh-keygen's to read
                raise InvalidInput(f"--sign: no key file {path}")
        done = keygen(["-q", "-Y", "sign", "-f", str(path), "-n", namespace], payload)
    if done.returncode != 0:
        shown = f"the agent's key {key.fingerprint}" if isinstance(key, PublicKey) else key
        raise InvalidInput(f"ssh-keygen could not sign with {shown}: {said(done)}")
    return done.stdout.decode()


def verify(payload: bytes, signature: str, person: str, keys: Sequence[str]) -> str:
    """Why ``signature`` is not a good signature of ``payload`` by one of ``keys`` as
    ``person``, or '' if it is: ``ssh-keygen -Y verify`` against an allowed_signers file
    written, with the signature, to a folder only this user can read."""
    with tempfile.TemporaryDirectory(prefix="runbook-verify-") as scratch:
        folder = Path(scratch)
        (folder / "allowed_signers").write_text(allowed_signers(person, keys))
        (folder / "signature").write_text(signature)
        done = keygen(["-Y", "verify", "-f", str(folder / "allowed_signers"), "-I",
                       principal(person), "-n", NAMESPACE, "-s", str(folder / "signature")],
                      payload)
    return "" if done.returncode == 0 else said(done)


def agent_keys() -> list[PublicKey]:
    """The keys the running ssh-agent holds (none without an agent)."""
    if not os.environ.get("SSH_AUTH_SOCK") or shutil.which("ssh-add") is None:
        return []
    done = subprocess.run([_program("ssh-add"), "-L"], capture_output=True, check=False,
                          stdin=subprocess.DEVNULL)
    found = []
    for line in done.stdout.decode(errors="replace").splitlines() if done.returncode == 0 else []:
        try:
            found.append(parse_key(line))
        except ValueError:
            continue
    return found


def said(done: subprocess.CompletedProcess[bytes]) -> str:
    """Why ssh-keygen failed: the last line it printed, else its exit code."""
    return _last_line(done.stderr) or _last_line(done.stdout) or \
        f"exit code {done.returncode}"


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()
             if line.strip()]
    return lines[-1] if lines else ""
