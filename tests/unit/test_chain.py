"""The journal's hash chain (engine/store/chain.py): how a record is hashed, and what checking
a chain finds: an intact chain, an edited, removed, reordered or inserted record, named by its
sequence number; a journal cut short or rewritten behind an anchored head."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from engine.store import JournalRecord
from engine.store.chain import (
    GENESIS,
    MAX_PROBLEMS,
    Anchor,
    Link,
    check,
    next_link,
    record_hash,
    verify,
)


def chain(count: int, *, run_id: str = "r1") -> list[JournalRecord]:
    """``count`` records appended as a store appends them."""
    records: list[JournalRecord] = []
    for i in range(count):
        link = next_link((records[-1].seq, records[-1].hash) if records else None)
        records.append(appended(link, f"2026-01-01T00:00:{i:02d}", run_id, "step",
                                {"step": f"s{i}", "status": "ok"}))
    return records


def appended(link: Link, at: str, run_id: str, kind: str, data: dict[str, Any]
             ) -> JournalRecord:
    return JournalRecord(link.seq, at, run_id, kind, data, link.prev_hash,
                         record_hash(link.prev_hash, link.seq, at, run_id, kind, data))


def rehashed(rec: JournalRecord) -> JournalRecord:
    """The record hashed again as it now is: what a forger who can write the store does."""
    return replace(rec, hash=record_hash(rec.prev_hash, rec.seq, rec.at, rec.run_id, rec.kind,
                                         rec.data))


def anchor_of(records: list[JournalRecord]) -> Anchor:
    return Anchor(records[0].hash, records[-1].seq, records[-1].hash)


def test_an_appended_chain_is_intact_and_says_where_it_ends():
    records = chain(5)
    verdict = check(records)
    assert verdict.intact and verdict.problems == [] and verdict.problem_count == 0
    assert (verdict.records, verdict.last_seq) == (5, 5)
    assert (verdict.first, verdict.head) == (records[0].hash, records[-1].hash)
    assert verdict.after_anchor is None
    assert verify(records) == []


def test_the_first_record_follows_the_genesis_hash_and_each_next_the_one_before():
    assert next_link(None) == Link(1, GENESIS) == Link(1, "0" * 64)
    assert next_link((41, "ab" * 32)) == Link(42, "ab" * 32)


def test_an_empty_chain_is_intact_and_has_no_head():
    verdict = check([])
    assert verdict.intact
    assert (verdict.records, verdict.last_seq, verdict.head, verdict.first) == (0, 0, "", "")
    assert verify([]) == []


@pytest.mark.parametrize("field", ["seq", "at", "run_id", "kind", "data", "prev_hash"])
def test_a_record_s_hash_covers_each_of_its_fields(field):
    base = {"prev_hash": GENESIS, "seq": 1, "at": "t1", "run_id": "r1", "kind": "step",
            "data": {"status": "ok"}}
    other = {"prev_hash": "f" * 64, "seq": 2, "at": "t2", "run_id": "r2", "kind": "approval",
             "data": {"status": "failed"}}
    assert record_hash(**base) != record_hash(**{**base, field: other[field]})


def test_a_record_s_hash_does_not_depend_on_the_order_of_its_data_s_keys():
    assert record_hash(GENESIS, 1, "t", "r1", "step", {"a": 1, "b": [1, 2]}) == \
        record_hash(GENESIS, 1, "t", "r1", "step", {"b": [1, 2], "a": 1})


def test_an_edited_record_is_named_and_only_it():
    records = chain(4)
    records[2] = replace(records[2], data={"step": "s2", "status": "failed"})
    assert verify(records) == ["record 3: its content does not match its hash (edited)"]


@pytest.mark.parametrize("edit", [{"at": "2025-12-31T23:59:59"}, {"run_id": "r9"},
                                  {"kind": "approval"}], ids=["time", "run", "kind"])
def test_an_edit_of_any_hashed_field_is_found(edit):
    records = chain(3)
    records[0] = replace(records[0], **edit)
    assert verify(records) == ["record 1: its content does not match its hash (edited)"]


def test_an_edited_record_hashed_again_breaks_the_link_to_the_next():
    records = chain(4)
    records[1] = rehashed(replace(records[1], data={"step": "s1", "status": "skipped"}))
    assert verify(records) == ["record 3: does not follow the record before it (removed, "
                               "inserted or reordered records)"]


def test_a_removed_record_is_found_where_it_is_missing():
    records = chain(5)
    del records[2]
    assert verify(records) == [
        "record 4: expected record 3 here (missing or moved)",
        "record 4: does not follow the record before it (removed, inserted or reordered "
        "records)"]


def test_a_removed_first_record_is_found():
    problems = verify(chain(3)[1:])
    assert problems == [
        "record 2: expected record 1 here (missing or moved)",
        "record 2: does not follow the record before it (removed, inserted or reordered "
        "records)"]


def test_reordered_records_are_found_out_of_order():
    records = chain(4)
    records[1], records[2] = records[2], records[1]
    problems = verify(records)
    assert "record 2: expected record 4 here (out of order)" in problems
    assert {p.split(":")[0] for p in problems if "does not follow" in p} == \
        {"record 3", "record 2", "record 4"}
    assert not any("edited" in p for p in problems)  # each record is as it was written


def test_records_swapped_in_place_are_not_reported_missing():
    records = chain(4)
    records[1], records[2] = records[2], records[1]
    assert [p for p in verify(records) if "(missing)" in p] == []


def test_an_inserted_record_is_found_even_when_it_is_hashed_into_the_chain():
    records = chain(3)
    forged = appended(next_link((records[0].seq, records[0].hash)), "2026-01-01T00:00:00",
                      "r1", "approval", {"by": "mallory"})
    problems = verify([records[0], forged, *records[1:]])
    assert problems == [
        "record 2: expected record 3 here (out of order)",
        "record 2: does not follow the record before it (removed, inserted or reordered "
        "records)"]


def test_a_whole_chain_rewritten_and_hashed_again_is_intact_without_an_anchor():
    # What the chain alone cannot tell, and why a head is kept outside the store (below).
    original = chain(3)
    rewritten = chain(3, run_id="r2")
    assert verify(rewritten) == []
    assert check(rewritten).first != check(original).first


def test_a_journal_that_still_holds_its_anchored_head_is_intact_and_counts_what_came_after():
    records = chain(6)
    verdict = check(records, anchor_of(records[:4]))
    assert verdict.intact
    assert verdict.after_anchor == 2
    assert check(records, anchor_of(records)).after_anchor == 0


def test_a_journal_cut_short_before_its_anchored_head_is_found_truncated():
    records = chain(6)
    verdict = check(records[:4], anchor_of(records))
    assert verdict.problems == ["record 6 (the anchored head) is not in the journal, which "
                                "ends at record 4: records were removed from its end "
                                "(truncated)"]
    emptied = check([], anchor_of(records))
    assert not emptied.intact
    assert "which ends at record 0" in emptied.problems[0]


def test_a_journal_rewritten_from_its_start_is_not_the_anchored_one():
    records = chain(3)
    other = chain(3, run_id="r2")
    verdict = check(other, anchor_of(records))
    assert verdict.problems == [
        f"record 1: its hash {other[0].hash[:16]} is not the anchored head's first record "
        f"{records[0].hash[:16]} (the journal was rewritten from its start, or the head is "
        "another store's)",
        f"record 3: its hash {other[2].hash[:16]} is not the anchored head's "
        f"{records[2].hash[:16]} (the journal was rewritten up to it)"]


def test_a_journal_rewritten_up_to_its_anchored_head_is_found():
    records = chain(4)
    anchor = anchor_of(records[:3])
    rewritten = records[:1]
    for rec in records[1:]:  # record 2 changed, and every record after it hashed again
        data = {**rec.data, "status": "failed"} if rec.seq == 2 else rec.data
        rewritten.append(rehashed(replace(rec, data=data, prev_hash=rewritten[-1].hash)))
    assert verify(rewritten) == []
    assert check(rewritten, anchor).problems == [
        f"record 3: its hash {rewritten[2].hash[:16]} is not the anchored head's "
        f"{records[2].hash[:16]} (the journal was rewritten up to it)"]


def test_an_anchored_head_missing_from_the_middle_of_the_journal_is_found():
    records = chain(5)
    verdict = check(records[:2] + records[3:], anchor_of(records[:3]))
    assert "record 3 (the anchored head) is not in the journal" in verdict.problems


def test_past_the_first_problems_the_rest_are_counted_not_listed():
    records = [replace(rec, data={"edited": True}) for rec in chain(MAX_PROBLEMS + 20)]
    verdict = check(records)
    assert verdict.problem_count == MAX_PROBLEMS + 20
    assert len(verdict.problems) == MAX_PROBLEMS
    assert verdict.problems[-1].startswith(f"record {MAX_PROBLEMS}: ")
    assert not verdict.intact


def test_a_chain_is_checked_as_it_is_read():
    records = chain(50)

    def read() -> Iterator[JournalRecord]:
        yield from records  # read once, as a store's scan yields its rows

    verdict = check(read())
    assert verdict.intact and verdict.records == 50 and verdict.head == records[-1].hash
