"""The audit journal: checking its hash chain, the tables against it, and its end against a
head kept outside the store (``present_record`` renders the change record).

Each journal record carries the hash of the one before it, so editing, removing or
reordering a record breaks the chain from that point on (``engine.store.chain`` hashes and
checks it, for the store and for this module alike). ``check`` reads the records as the
store hands them over, so a journal of any length is verified in constant memory. The chain
cannot show a row written to a table alone, nor records cut off its end, nor a chain
rewritten whole: the tables are compared with the journal (``engine.store.crosscheck``),
and a head kept elsewhere (``engine.trust.journal_head``) anchors its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.clock import iso
from engine.errors import InvalidInput, RunbookError, StoreDamaged
from engine.store import StateStore, open_store
from engine.store.chain import Anchor, Verdict, check, verify
from engine.trust import journal_head
from engine.trust.journal_head import Head

__all__ = [
    "HeadFile",
    "Verdict",
    "check",
    "read_head",
    "sign_head",
    "verify",
    "verify_store",
]


@dataclass(frozen=True)
class HeadFile:
    """A head file read for ``audit verify --head``, and who signed it ('' if unsigned)."""

    path: str
    head: Head
    signer: str = ""


def read_head(path: str, *, allowed_signers: str | None = None,
              key: str | None = None) -> HeadFile:
    """Read a head file and check its signature when asked to (a signed head always is):
    InvalidInput if the file is not a head, or the signature is missing, made by a key not
    allowed, or over other text."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the journal head: {exc}", file=path) from exc
    head = journal_head.parse(text, where=path)
    if allowed_signers is None and key is None:
        if head.signature:
            raise InvalidInput("the journal head is signed: give --allowed-signers FILE or "
                               "--key PUBKEY to check its signature", file=path)
        return HeadFile(path, head)
    signer = journal_head.check_signature(
        head, allowed_signers=Path(allowed_signers) if allowed_signers else None,
        key=Path(key) if key else None, where=path)
    return HeadFile(path, head, signer)


def verify_store(state: str | None = None, *, head: Head | None = None,
                 expect_records: int | None = None,
                 also: Callable[[StateStore, int | None], Iterable[str]] | None = None,
                 full: bool = True) -> Verdict:
    """The chain, the tables against it, and its end against ``head`` or ``expect_records``,
    all read in one snapshot of the store. Unless ``full`` (or given a ``head``), from the last
    record a verification found intact, if its hash is still that record's: the records
    after it and the runs they belong to; ``also``: more checks of the store (the
    approvals' signatures). A store that cannot be read as one, or an emptied one, is a
    damaged journal, not an empty one."""
    anchor = Anchor(head.store, head.records, head.head) if head else None
    try:
        store = open_store(state, readonly=True, journal_end=False)
    except StoreDamaged as exc:
        verdict = Verdict()
        verdict.found(exc.message)
        return verdict
    with store, store.snapshot():
        since = None if full or anchor else store.verified_position()
        rewritten = ""
        if since is not None and store.record_hash_at(since[0]) != since[1]:
            # The record found intact then is not there as it was: the journal was rewritten
            # (or cut) at or before it. All of it is checked again, to say where.
            rewritten = (f"record {since[0]}: not the record audit verify found intact there "
                         f"at {since[2]} (the journal was rewritten or cut at or before it)")
            since = None
        if since is not None:
            verdict = check(store.scan_chain(after=since[0]), start=since[:2])
            verdict.since, verdict.records = since[0], verdict.records + since[0]
        else:
            verdict = check(store.scan_chain(), anchor)
        if rewritten:
            verdict.found(rewritten)
        emptied = store.emptied()
        if emptied:
            verdict.found(emptied)
        for problem in store.cross_check(after=since[0] if since else None):
            verdict.found(problem)
        for problem in also(store, since[0] if since else None) if also is not None else ():
            verdict.found(problem)
    if expect_records is not None and verdict.last_seq < expect_records:
        verdict.found(f"the journal ends at record {verdict.last_seq}; {expect_records} "
                      "were expected (records were removed from its end)")
    return verdict


def sign_head(key: str, *, file: str | None = None, state: str | None = None,
              now: datetime | None = None,
              also: Callable[[StateStore, int | None], Iterable[str]] | None = None) -> Head:
    """Verify the journal, then sign its head with ``key`` and write it to ``file`` (whole
    or not at all). A journal that is not intact, or has no record, has no head to sign."""
    verdict = verify_store(state, also=also)
    if not verdict.intact:
        raise RunbookError(f"the journal is not intact ({verdict.problem_count} problems, "
                           f"first: {verdict.problems[0]}): no head was signed; see "
                           "`runbook audit verify`")
    if not verdict.records:
        raise InvalidInput("the journal has no records: there is no head to sign")
    head = Head(verdict.first, verdict.last_seq, verdict.head,
                iso(now or datetime.now(UTC)))
    signed = journal_head.sign(head, Path(key))
    if file is not None:
        journal_head.write(Path(file), signed.file_text())
    return signed
