"""The people's public SSH keys, as the inventory lists them: ``keys:`` lines under a person,
and ``keys_file:``, a file of such lines beside the inventory (one key a line, ``#`` comments,
as an authorized_keys file). Read when the inventory is loaded, so that a key that is not
one, or a key listed for two people (which would let one person count as two, or as the
starter of a run), refuses the inventory before anything runs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.language import loader
from engine.trust import sshsig

MAX_KEYS_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class PeopleKeys:
    """Each person's keys (lines without comments, in the order listed), and a digest of the
    keys files read, which the inventory's hash includes."""

    keys: dict[str, tuple[str, ...]]
    files_sha256: str = ""


def load(doc: loader.Document) -> PeopleKeys:
    people: Mapping[str, Any] = doc.data.get("people") or {}
    found: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    digest = hashlib.sha256()
    files = False
    for person, spec in people.items():
        listed: list[str] = []
        for i, text in enumerate((spec or {}).get("keys") or ()):
            line = doc.line_of(("people", person, "keys", i))
            listed.append(_key(text, person, owner, str(doc.path), line,
                               f"$.people.{person}.keys[{i}]"))
        if (spec or {}).get("keys_file"):
            files = True
            path = doc.path.parent / str(spec["keys_file"])
            raw = _read(path, doc, person)
            digest.update(hashlib.sha256(raw).digest())
            for number, text in enumerate(raw.decode(errors="replace").splitlines(), 1):
                if text.strip() and not text.lstrip().startswith("#"):
                    listed.append(_key(text, person, owner, str(path), number, None))
        if listed:
            found[person] = tuple(dict.fromkeys(listed))
    return PeopleKeys(found, digest.hexdigest() if files else "")


def _read(path: Path, doc: loader.Document, person: str) -> bytes:
    line = doc.line_of(("people", person, "keys_file"))
    try:
        if path.stat().st_size > MAX_KEYS_FILE_BYTES:
            raise InvalidInput(f"keys_file {path} is larger than 1 MB", file=str(doc.path),
                               line=line)
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"keys_file of {person}: cannot read {path}: {exc.strerror}",
                           file=str(doc.path), line=line) from exc


def _key(text: Any, person: str, owner: dict[str, str], file: str, line: int | None,
         path: str | None) -> str:
    try:
        key = sshsig.parse_key(str(text))
    except ValueError as exc:
        raise InvalidInput(f"a key of {person}: {exc}", file=file, line=line,
                           path=path) from exc
    other = owner.setdefault(key.line, person)
    if other != person:
        raise InvalidInput(f"key {key.fingerprint} is listed for both {other} and {person}: "
                           "a key stands for one person", file=file, line=line, path=path)
    return key.line


def inventory_sha(doc_sha: str, people_keys: PeopleKeys) -> str:
    """The inventory's hash: its file's, and with keys files, theirs too (a key added to a
    keys file changes what the inventory says as much as one added to the file itself)."""
    if not people_keys.files_sha256:
        return doc_sha
    return hashlib.sha256(f"{doc_sha}\n{people_keys.files_sha256}".encode()).hexdigest()


def owner_of(key_line: str, keys: Mapping[str, tuple[str, ...]]) -> str | None:
    """Whose key this is, or None."""
    return next((person for person, listed in keys.items() if key_line in listed), None)
