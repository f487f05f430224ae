"""Ctrl-C and SIGTERM stop a run where it is, and the stop is always recorded.

The first signal raises ``KeyboardInterrupt`` in the step in flight: its child processes end
and the executor records the step and the run as ``interrupted``. Whatever comes after
(another Ctrl-C while the engine waits for a child to go, a SIGTERM from ``runbook abort``)
does not raise again, which could cut that record short: it kills every process the engine
started, at once, so the stop finishes without waiting. While the executor writes a
checkpoint, a first signal waits until the write is over.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    stopping = False  # the first signal was raised: the run is stopping
    pending = False  # a first signal came in while a checkpoint was written
    shielded = 0


_state = _State()


def handler(signum: int, frame: FrameType | None) -> None:
    if _state.stopping:
        end_children()
        return
    if _state.shielded:
        _state.pending = True
        return
    _state.stopping = True
    raise KeyboardInterrupt


def installed() -> bool:
    """Whether the engine's handler answers both signals."""
    return all(signal.getsignal(number) is handler for number in SIGNALS)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """The engine's handler for SIGINT and SIGTERM while the body runs (main thread only);
    the previous handlers afterwards."""
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, handler)
    _state.stopping = _state.pending = False
    _state.shielded = 0
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
        _state.stopping = _state.pending = False


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Put back the handlers a library replaced while the body ran (ansible-runner installs
    its own unless told not to): after it, the engine's are in place whatever it did."""
    try:
        previous: dict[int, Any] = {number: signal.getsignal(number) for number in SIGNALS}
    except ValueError:  # not the main thread: signals are not this thread's to handle
        yield
        return
    try:
        yield
    finally:
        for number, before in previous.items():
            if signal.getsignal(number) is not before and before is not None:
                signal.signal(number, before)


@contextlib.contextmanager
def shielded(*, deliver: bool = True) -> Iterator[None]:
    """A checkpoint write that a first signal does not cut in two: the signal is raised once
    the write is over, or dropped (``deliver=False``) when the write ends the run anyway."""
    _state.shielded += 1
    try:
        yield
    finally:
        _state.shielded -= 1
        if not _state.shielded and _state.pending and not _state.stopping:
            _state.pending = False
            if deliver:
                _state.stopping = True
                raise KeyboardInterrupt


def stopping() -> bool:
    return _state.stopping


def end_children() -> None:
    """SIGKILL every process this engine started (they carry its pid in their environment)."""
    from engine.system import proc

    proc.end_processes_of(None, engine_pid=os.getpid())
