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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.store.records import ChainRecord, JournalRecord

GENESIS = "0" * 64  # what the first record follows
# A journal row's columns as read, from ``journal j``. A row keeps the hash it follows as ''
# when that is the hash of the row before it (so, in every record an engine appends): the
# chain does not store each hash twice. The reader takes it from that row (GENESIS for the
# first); records written before hold it themselves. A record whose row before is gone gets
# '', which its hash does not match.
JOURNAL_COLUMNS = (
    "j.seq, j.at, j.run_id, j.kind, j.data, "
    "CASE WHEN j.prev_hash <> '' THEN j.prev_hash WHEN j.seq = 1 THEN "
    "'0000000000000000000000000000000000000000000000000000000000000000' "
    "ELSE COALESCE((SELECT p.hash FROM journal p WHERE p.seq = j.seq - 1), '') END, j.hash")


def dumps(value: Any) -> str:
    """Canonical JSON: the form records are stored and hashed in."""
    return json.dumps(value, sort_keys=True, default=str)


def compact(value: Any) -> str:
    """Canonical JSON without the spaces: the form the tables (a step's result, a history
    entry's data, a run's params, a plan) keep their values in. The journal keeps ``dumps``,
    the form its hashes cover."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(prev_hash: str, seq: int, at: str, run_id: str, kind: str,
                data: dict[str, Any]) -> str:
    return text_hash(prev_hash, seq, at, run_id, kind, dumps(data))


def text_hash(prev_hash: str, seq: int, at: str, run_id: str, kind: str, text: str) -> str:
    """A record's hash from its data as the journal keeps it (``dumps``, the canonical form
    every record is written in): a text changed in any way no longer has its hash."""
    joined = "\n".join([prev_hash, str(seq), at, run_id, kind, text])
    return hashlib.sha256(joined.encode()).hexdigest()


def content_hash(rec: JournalRecord | ChainRecord) -> str:
    """The hash a record's content gives, from its stored text when it was read with it."""
    if isinstance(rec, ChainRecord):
        return text_hash(rec.prev_hash, rec.seq, rec.at, rec.run_id, rec.kind, rec.text)
    return record_hash(rec.prev_hash, rec.seq, rec.at, rec.run_id, rec.kind, rec.data)


class Link(NamedTuple):
    """Where the next record goes: its sequence number and the hash it follows."""

    seq: int
    prev_hash: str


def next_link(last: tuple[int, str] | None) -> Link:
    """The link after the last record (its seq and hash), or the first one."""
    return Link(last[0] + 1, last[1]) if last else Link(1, GENESIS)


MAX_PROBLEMS = 100  # told one by one; past that, counted: a rewritten table is not listed


class Anchor(NamedTuple):
    """A head kept outside the store: the journal's first record's hash (which store),
    the sequence number of its last record then, and that record's hash."""

    first: str
    seq: int
    head: str


@dataclass
class Verdict:
    """What checking a chain found: how many records, the last one's sequence number and
    hash, how many records came after an anchored head, and what is wrong (the first
    MAX_PROBLEMS problems, and how many there were in all)."""

    records: int = 0
    head: str = ""
    first: str = ""  # the first record's hash: which store this journal is
    last_seq: int = 0
    after_anchor: int | None = None  # records after the anchored head; None: no anchor
    # Checked from this record on (a verification before found it and all before it
    # intact); None: from the first.
    since: int | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def intact(self) -> bool:
        return self.problem_count == 0

    def found(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def check(records: Iterable[JournalRecord | ChainRecord], anchor: Anchor | None = None,
          start: tuple[int, str] | None = None) -> Verdict:
    """Check the chain record by record, holding only the record before: a journal of any
    length is checked in constant memory when ``records`` is read from the store as it goes.
    With an ``anchor``, the journal must still hold its head record, with its hash, where it
    was: a truncated journal, or one rewritten and hashed again before that point, fails."""
    verdict = Verdict()
    # From a record checked before (its number and hash): the records after it.
    prev_hash, expected_seq = (start[1], start[0] + 1) if start else (GENESIS, 1)
    anchored = False
    after = 0
    for rec in records:
        if anchor is not None:
            anchored, after = _against(anchor, rec, verdict, anchored, after)
        if rec.seq != expected_seq:
            verdict.found(f"record {rec.seq}: expected record {expected_seq} here "
                          f"({'missing or moved' if rec.seq > expected_seq else 'out of order'})")
        if rec.prev_hash != prev_hash:
            verdict.found(f"record {rec.seq}: does not follow the record before it "
                          "(removed, inserted or reordered records)")
        if content_hash(rec) != rec.hash:
            verdict.found(f"record {rec.seq}: its content does not match its hash (edited)")
        prev_hash = rec.hash
        expected_seq = rec.seq + 1
        if not verdict.records:
            verdict.first = rec.hash
        verdict.records += 1
    verdict.head = prev_hash if verdict.records or start else ""
    verdict.last_seq = expected_seq - 1
    if anchor is not None:
        verdict.after_anchor = after
        if not anchored:
            verdict.found(f"record {anchor.seq} (the anchored head) is not in the journal, "
                          f"which ends at record {verdict.last_seq}: records were removed "
                          "from its end (truncated)" if verdict.last_seq < anchor.seq else
                          f"record {anchor.seq} (the anchored head) is not in the journal")
    return verdict


def _against(anchor: Anchor, rec: JournalRecord | ChainRecord, verdict: Verdict, anchored: bool,
             after: int) -> tuple[bool, int]:
    """Compare one record with the anchored head: (the head was found, records after it)."""
    if rec.seq == 1 and rec.hash != anchor.first:
        verdict.found(f"record 1: its hash {rec.hash[:16]} is not the anchored head's first "
                      f"record {anchor.first[:16]} (the journal was rewritten from its start, "
                      "or the head is another store's)")
    if rec.seq == anchor.seq:
        if rec.hash != anchor.head:
            verdict.found(f"record {rec.seq}: its hash {rec.hash[:16]} is not the anchored "
                          f"head's {anchor.head[:16]} (the journal was rewritten up to it)")
        return True, after
    return anchored, after + (rec.seq > anchor.seq)


def verify(records: Iterable[JournalRecord | ChainRecord]) -> list[str]:
    """What is wrong with the chain, record by record; empty when it is intact."""
    return check(records).problems
