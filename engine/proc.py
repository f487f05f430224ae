"""Run a child process from an argv list (never a shell string), streaming its output.

The child is killed if this process dies, so a run killed mid-step leaves no orphan still
changing things while the run is resumed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

MAX_KEPT = 64 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run(argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, stdin: str | None = None,
        emit: Callable[[str], None] = lambda line: None) -> Completed:
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=full_env, text=True, errors="replace",
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except OSError as exc:
        return Completed(rc=127, stdout="", stderr=f"{argv[0]}: {exc.strerror}")
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_pump, args=(proc.stdout, out, emit), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, err, emit), daemon=True)]
    for t in readers:
        t.start()
    if stdin is not None and proc.stdin:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    for t in readers:
        t.join(timeout=5)
    return Completed(rc=proc.returncode, stdout=_tail("".join(out)), stderr=_tail("".join(err)),
                     timed_out=timed_out)


def _pump(stream: IO[str] | None, sink: list[str], emit: Callable[[str], None]) -> None:
    if stream is None:
        return
    for line in stream:
        sink.append(line)
        emit(line.rstrip("\n"))
    stream.close()


def _tail(text: str) -> str:
    return text if len(text) <= MAX_KEPT else "…" + text[-MAX_KEPT:]
