"""The commands of the audit journal and the store: audit export/verify/sign-head, store
migrate, gc."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from engine.errors import EXIT_OK, EXIT_STEP_FAILED, InvalidInput

if TYPE_CHECKING:
    pass
from engine.cli.commands.common import emit, reply


def cmd_audit(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import api

    if args.action == "sign-head":
        return _sign_head(args)
    if args.action == "verify":
        return _verify(args)
    if not args.run:
        raise InvalidInput("runbook audit export needs --run RUN_ID")
    from engine.views import present, present_record

    record = api.change_record(run_id=args.run)
    plan_text = present.plan_text(record.plan) if record.plan is not None else None
    if args.format == "html":
        from engine.views import present_record_html

        text = present_record_html.record_html(record, plan_text)
    else:
        text = present_record.markdown(record, plan_text)
    if args.file:
        with open(args.file, "w") as fh:
            fh.write(text)
        print(f"wrote {args.file}")
    else:
        print(text, end="")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from engine import api

    # The head printed names the journal's first record: read from there.
    verdict, anchor = api.verify_journal(head=args.head, allowed_signers=args.allowed_signers,
                                         key=args.key, expect_records=args.expect_records,
                                         full=args.full or args.print_head)
    more = verdict.problem_count - len(verdict.problems)
    if args.output == "json":
        emit({"records": verdict.records, "head": verdict.head or None,
               "intact": verdict.intact, "problems": verdict.problems,
               "verified_before": verdict.since,
               "problem_count": verdict.problem_count,
               "anchor": None if anchor is None else {
                   "file": anchor.path, "records": anchor.head.records,
                   "head": anchor.head.head, "at": anchor.head.at,
                   "signed_by": anchor.signer or None,
                   "records_after": verdict.after_anchor}})
        return EXIT_OK if verdict.intact else EXIT_STEP_FAILED
    # With --print-head, standard output is the head alone (`> head.txt`).
    report = sys.stderr if args.print_head else sys.stdout
    for problem in verdict.problems:
        print(f"journal: {problem}", file=report)
    if more:
        print(f"journal: and {more} more problems", file=report)
    if not verdict.intact:
        print(f"journal damaged: {verdict.records} records, head {verdict.head or '-'}",
              file=report)
        return EXIT_STEP_FAILED
    print(f"journal intact: {verdict.records} records, head {verdict.head or '-'}",
          file=report)
    if verdict.since is not None:
        print(f"records 1-{verdict.since} were found intact before and record {verdict.since} "
              f"is as it was; the {verdict.records - verdict.since} after it and their runs "
              "checked now (--full checks every record)", file=report)
    if anchor is not None:
        signed = f"signed by {anchor.signer}" if anchor.signer else "unsigned"
        print(f"head {anchor.path} ({signed}, {anchor.head.at}): record "
              f"{anchor.head.records} is where it was; {verdict.after_anchor} records "
              "came after it", file=report)
    if args.print_head:
        if not verdict.records:
            raise InvalidInput("the journal has no records: there is no head to print")
        from engine.trust.journal_head import Head

        print(Head(verdict.first, verdict.last_seq, verdict.head, _now()).text(), end="")
    return EXIT_OK


def _now() -> str:
    from datetime import UTC, datetime

    from engine.clock import iso

    return iso(datetime.now(UTC))


def _sign_head(args: argparse.Namespace) -> int:
    from engine import api

    if not args.key:
        raise InvalidInput("runbook audit sign-head needs --key KEY (an SSH private key, or "
                           "a public key whose private half the ssh-agent holds)")
    head = api.sign_head(key=args.key, file=args.file)
    if args.output == "json":
        emit({"records": head.records, "head": head.head, "store": head.store,
               "at": head.at, "file": args.file, "text": head.file_text()})
    elif args.file:
        print(f"signed the journal head: record {head.records}, head {head.head}; "
              f"wrote {args.file}")
    else:
        print(head.file_text(), end="")
    return EXIT_OK


def cmd_store(args: argparse.Namespace, extra: list[str]) -> int:
    from engine import store

    if args.action == "check":
        records = store.check()
        reply(args.output, {"sound": True, "records": records},
              f"state store sound: every page read, the journal's end as written "
              f"({records} records; runbook audit verify checks each of them)")
        return EXIT_OK
    before, after = store.migrate()
    if args.output == "json":
        emit({"from": before, "to": after})
    elif before == after:
        print(f"state store at version {after}: nothing to migrate")
    elif before == 0:
        print(f"state store created at version {after}")
    else:
        print(f"state store migrated from version {before} to {after}")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace, extra: list[str]) -> int:
    from dataclasses import asdict

    from engine import api

    result = api.gc(older_than=args.older_than, inventory=args.inventory, dry_run=args.dry_run)
    collected = result.collected
    if args.output == "json":
        emit({"dry_run": result.dry_run, "older_than": result.older_than,
               "source": result.source, "ended_before": result.cutoff,
               "removed": [asdict(r) for r in collected.removed],
               "finished": [asdict(r) for r in collected.finished],
               "kept_open": collected.kept_open, "kept_unknown": collected.kept_unknown})
        return EXIT_OK
    verb = "would remove" if result.dry_run else "removed"
    for removal in collected.finished:
        print(f"removed runs/{removal.run_id} (left half removed by a gc that was stopped)")
    for removal in collected.removed:
        print(f"{verb} runs/{removal.run_id}: {removal.files} files, "
              f"{_size(removal.bytes)}, ended {removal.ended_at}")
    total = sum(r.bytes for r in collected.removed)
    print(f"gc: {verb} {len(collected.removed)} run folders ({_size(total)}) of runs that "
          f"ended before {result.cutoff} ({result.source} {result.older_than}); the journal "
          "and run records stay")
    if collected.kept_open:
        print(f"gc: kept {collected.kept_open} folders of runs that may still be resumed or "
              "wait for an approval")
    if collected.kept_unknown:
        print(f"gc: kept {collected.kept_unknown} folders of runs this state store has no "
              "record of")
    return EXIT_OK


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    return f"{count / 1024:.1f} KB" if count < 1024 ** 2 else f"{count / 1024 ** 2:.1f} MB"
