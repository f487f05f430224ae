"""Old runs' artifacts folders, removed once the retention period is over (``runbook gc``).

Each run leaves what its steps kept (Ansible's masked artifacts, its launcher) under
``home()/runs/RUN``: hundreds of kilobytes a run, never read again by the engine. The folder
of a run that ended (done, aborted, refused) longer ago than the retention period is
removed; the run's records and the journal stay, and the journal records each removal
(``artifacts-removed``). A run that can still be resumed, or that waits for an approval,
keeps its folder whatever its age, and so does a folder of a run this store does not know.

Removed rather than compressed: compressed, the folders would still grow with every run,
and nothing in them is needed to resume, status or audit a run that ended (its steps'
results are in the store, their hashes in the journal).

A removal is one rename first (into ``runs/.removing/OWNER/``), then the journal record,
then the deletion of the renamed copy: a gc killed at any moment leaves each run's folder
whole or gone, never half of it. The next gc finishes the copies a gc that is no longer
alive left behind, and journals those it had not journaled yet.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from engine.clock import iso
from engine.errors import InvalidInput
from engine.status import ENDED
from engine.store import EventRecord, StateStore, home
from engine.store.owner import is_alive, this_process
from engine.system import interrupts, pause

REMOVED = "artifacts-removed"  # the journal record of one run's folder removed
REMOVING = ".removing"  # where folders go, renamed, before they are deleted
DURATION = re.compile(r"^([0-9]{1,6})([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_HELP = "a number and a unit: m (minutes), h (hours), d (days) or w (weeks), as 90d"


def parse_duration(text: str) -> timedelta | None:
    """``90d`` as a timedelta; None if ``text`` is not such a duration."""
    match = DURATION.match(text.strip())
    if match is None:
        return None
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def duration(text: str, *, where: str) -> timedelta:
    found = parse_duration(text)
    if found is None:
        raise InvalidInput(f"{where}: {text!r} is not a duration ({DURATION_HELP})")
    return found


def runs_folder() -> Path:
    return home() / "runs"


@dataclass(frozen=True)
class Removal:
    """One run's folder: removed, or (a dry run) that would be."""

    run_id: str
    ended_at: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Collected:
    removed: tuple[Removal, ...]
    finished: tuple[Removal, ...]  # left behind by an earlier gc that was stopped
    kept_open: int  # folders of runs that may still be resumed or wait for an approval
    kept_unknown: int  # folders of runs this store has no record of


def collect(store: StateStore, *, older_than: timedelta, now: datetime, dry_run: bool,
            reason: str, by: str) -> Collected:
    """Remove (or, ``dry_run``, list) the folders of runs ended before ``now - older_than``;
    the whole store checked first (the one command that reads all of it anyway)."""
    store.check_all()
    cutoff = now - older_than
    at = iso(now)
    finished = () if dry_run else tuple(_finish_left_behind(store, at, reason, by))
    removed: list[Removal] = []
    unknown = still_open = 0
    for folder in _run_folders():
        record = store.get_run(folder.name)
        if record is None:
            unknown += 1
            continue
        if record.status not in ENDED or not record.ended_at:
            still_open += 1
            continue
        if datetime.fromisoformat(record.ended_at) >= cutoff:
            continue
        files, size = _size(folder)
        removal = Removal(record.id, record.ended_at, files, size)
        if dry_run or _remove(store, folder, removal, at, reason, by):
            removed.append(removal)
    with contextlib.suppress(OSError):  # this gc's own place for folders set aside, if empty
        (runs_folder() / REMOVING / this_process()).rmdir()
    return Collected(tuple(removed), finished, still_open, unknown)


def _run_folders() -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(runs_folder()), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            yield Path(entry.path)


def _remove(store: StateStore, folder: Path, removal: Removal, at: str, reason: str,
            by: str) -> bool:
    aside = runs_folder() / REMOVING / this_process() / folder.name
    aside.parent.mkdir(parents=True, exist_ok=True)
    # The rename and its record go together: a first Ctrl-C waits until both are done.
    with interrupts.shielded():
        try:
            folder.rename(aside)
        except FileNotFoundError:  # another gc took it meanwhile
            return False
        _journal(store, removal, at, reason, by)
    _delete(aside)
    return True


def _finish_left_behind(store: StateStore, at: str, reason: str,
                        by: str) -> Iterator[Removal]:
    """Delete what gcs no longer alive renamed aside, journaling what they had not."""
    base = runs_folder() / REMOVING
    try:
        owners = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for owner in owners:
        if owner.name == this_process() or is_alive(owner.name):
            continue
        for entry in sorted(os.scandir(owner.path), key=lambda e: e.name):
            aside = Path(entry.path)
            journaled = any(j.kind == REMOVED for j in store.journal(entry.name))
            record = store.get_run(entry.name)
            files, size = _size(aside)
            removal = Removal(entry.name, (record.ended_at or "") if record else "", files,
                              size)
            if not journaled:
                with interrupts.shielded():
                    _journal(store, removal, at, reason, by)
            _delete(aside)
            yield removal
        _delete(Path(owner.path))


def _journal(store: StateStore, removal: Removal, at: str, reason: str, by: str) -> None:
    store.add_event(EventRecord(removal.run_id, at, REMOVED,
                                {"folder": f"runs/{removal.run_id}", "files": removal.files,
                                 "bytes": removal.bytes, "reason": reason, "by": by}))


def _delete(path: Path) -> None:
    """Delete a renamed-aside copy, deepest first; another gc may be deleting the same copy,
    so what is gone already is not an error."""
    for root, dirs, names in os.walk(path, topdown=False):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(root, name))
            pause.while_collecting()
        for name in dirs:
            inner = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(inner):
                    os.unlink(inner)
                else:
                    os.rmdir(inner)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def _size(folder: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
            files += 1
    return files, size
