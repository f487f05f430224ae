"""The audit journal: read, verify (chain, tables, signatures, head) and sign its head."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.api.common import current_user
from engine.clock import iso
from engine.errors import InvalidInput
from engine.run.load import inventory_at
from engine.store import (
    JournalRecord,
    StateStore,
    open_store,
)

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    from engine.trust.audit import HeadFile, Verdict
    from engine.trust.journal_head import Head



def journal(*, state: str | None = None) -> list[JournalRecord]:
    """The whole audit journal, oldest first."""
    with open_store(state, readonly=True) as store:
        return store.journal()


def verify_journal(*, state: str | None = None, head: str | None = None,
                   allowed_signers: str | None = None, key: str | None = None,
                   expect_records: int | None = None, full: bool = False
                   ) -> tuple[Verdict, HeadFile | None]:
    """Check the journal's hash chain as it is read from the store, in constant memory, the
    tables and the approvals' signatures against it, and its end against a head file (its
    signature checked first) or an expected number of records. Unless ``full`` (or given a
    head), from where the last verification found it intact, if that record is still as it
    was; a journal found intact is remembered so, where the store can be written. Returns
    the verdict and the head file read, if any."""
    from engine.trust import audit

    if (allowed_signers or key) and head is None:
        raise InvalidInput("--allowed-signers and --key check a head's signature: give the "
                           "head with --head FILE")
    if allowed_signers and key:
        raise InvalidInput("give --allowed-signers FILE or --key PUBKEY, not both")
    if expect_records is not None and expect_records < 0:
        raise InvalidInput("--expect-records must be 0 or more")
    anchor = audit.read_head(head, allowed_signers=allowed_signers, key=key) \
        if head is not None else None
    verdict = audit.verify_store(state, head=anchor.head if anchor else None,
                                 expect_records=expect_records, also=_signatures_problems,
                                 full=full)
    if verdict.intact and verdict.last_seq:
        _remember(state, verdict)
    return verdict, anchor


def _remember(state: str | None, verdict: Verdict) -> None:
    """Where the next verification may start: this one found everything up to the journal's
    last record intact. Nothing is remembered where the store cannot be written (a
    read-only folder or role): the next one checks everything again."""
    from engine.store.migrations import POSITIONS_FROM

    with open_store(state, readonly=True, journal_end=False) as store:
        if store.version() < POSITIONS_FROM:
            return  # an older store is not migrated by an audit: `runbook store migrate`
    # Best effort: a store this process may only read refuses it one way or another
    # (SQLite's read-only file, a role without INSERT), and that changes nothing verified.
    with contextlib.suppress(Exception), open_store(state) as store:
        store.remember_verified(verdict.last_seq, verdict.head, iso(datetime.now(UTC)),
                                current_user())


def _signatures_problems(store: StateStore, after: int | None = None) -> Iterable[str]:
    """What is wrong with the stored approvals' signatures; ``after``: of the runs with
    journal records after that one (what a verification from there checks)."""
    from engine.trust import signatures

    runs = None if after is None else {r.run_id for r in store.scan_journal(after=after)}
    return signatures.check(store, lambda run_id: _keys_now(store, run_id), runs)


def _keys_now(store: StateStore, run_id: str) -> Mapping[str, Sequence[str]]:
    """The people's keys in a run's inventory as it is now: for a run started before runs
    recorded them."""
    record = store.get_run(run_id)
    try:
        return inventory_at(record.inventory).keys if record else {}
    except InvalidInput:
        return {}


def sign_head(*, key: str, file: str | None = None, state: str | None = None) -> Head:
    """Sign the journal's current head (after verifying the journal) with an SSH key."""
    from engine.trust import audit

    return audit.sign_head(key, file=file, state=state, also=_signatures_problems)
