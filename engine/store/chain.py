"""The journal's hash chain: how a record is hashed when it is appended, and how a chain is
checked. One module, so that the store that writes records and ``audit`` that verifies them
can never disagree on what a record's hash covers.

A record's hash covers the hash of the record before it, its sequence number, time, run,
kind and data (as canonical JSON), and nothing else: columns a store migration adds to the
journal table are outside the chain, so records written before a migration verify after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from engine.store import JournalRecord

GENESIS = "0" * 64  # what the first record follows


def dumps(value: Any) -> str:
    """Canonical JSON: the form records are stored and hashed in."""
    return json.dumps(value, sort_keys=True, default=str)


def record_hash(prev_hash: str, seq: int, at: str, run_id: str, kind: str,
                data: dict[str, Any]) -> str:
    text = "\n".join([prev_hash, str(seq), at, run_id, kind, dumps(data)])
    return hashlib.sha256(text.encode()).hexdigest()


class Link(NamedTuple):
    """Where the next record goes: its sequence number and the hash it follows."""

    seq: int
    prev_hash: str


def next_link(last: tuple[int, str] | None) -> Link:
    """The link after the last record (its seq and hash), or the first one."""
    return Link(last[0] + 1, last[1]) if last else Link(1, GENESIS)


def verify(records: Sequence[JournalRecord]) -> list[str]:
    """What is wrong with the chain, record by record; empty when it is intact."""
    problems: list[str] = []
    prev_hash = GENESIS
    expected_seq = 1
    for rec in records:
        if rec.seq != expected_seq:
            problems.append(f"record {rec.seq}: expected record {expected_seq} here "
                            f"({'missing' if rec.seq > expected_seq else 'out of order'})")
        if rec.prev_hash != prev_hash:
            problems.append(f"record {rec.seq}: does not follow the record before it "
                            "(removed, inserted or reordered records)")
        if record_hash(rec.prev_hash, rec.seq, rec.at, rec.run_id, rec.kind,
                       rec.data) != rec.hash:
            problems.append(f"record {rec.seq}: its content does not match its hash (edited)")
        prev_hash = rec.hash
        expected_seq = rec.seq + 1
    return problems
