"""Run a child process from an argv list (never a shell string), streaming its output.

Every child runs under ``engine/system/guard.py`` in a process group of its own, tagged with the
run's id in its environment: when the engine dies (even by SIGKILL) the guard ends the whole
group, and a resume ends whatever an earlier attempt of the run left alive, so no orphan
goes on changing things while the run is resumed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine.system import guard

MAX_KEPT = 64 * 1024
GUARD = Path(__file__).resolve().with_name("guard.py")
RUN_TAG = "RUNBOOK_RUN_ID"
ENGINE_TAG = "RUNBOOK_ENGINE_PID"
STEP_TAG = "RUNBOOK_STEP_ID"


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


def guarded(argv: Sequence[str]) -> list[str]:
    """``argv`` run under the guard: its process tree ends with the engine."""
    return [sys.executable, "-I", "-S", str(GUARD), *argv]


def tags(run_id: str) -> dict[str, str]:
    """Environment that marks a child (and everything it starts) as this run's."""
    return {RUN_TAG: run_id, ENGINE_TAG: str(os.getpid())}


def run(argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, stdin: str | None = None, run_id: str = "",
        emit: Callable[[str], None] = lambda line: None) -> Completed:
    full_env = {**os.environ, **(env or {}), **tags(run_id)}
    try:
        proc = subprocess.Popen(
            guarded(argv), cwd=cwd, env=full_env, text=True, errors="replace",
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        return Completed(rc=127, stdout="", stderr=f"{argv[0]}: {exc.strerror}")
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_pump, args=(proc.stdout, out, emit), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, err, emit), daemon=True)]
    timed_out = False
    try:
        # The readers never take Ctrl-C or SIGTERM: the kernel could hand a signal to a
        # reader (after a stop and continue, say), and the main thread, waiting for the
        # child, would never hear of it. Threads inherit the mask they are started with.
        with _signals_blocked():
            for t in readers:
                t.start()
        if stdin is not None and proc.stdin:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _end_group(proc)
    except BaseException:
        _end_group(proc)
        raise
    for t in readers:
        t.join(timeout=5)
    return Completed(rc=proc.returncode, stdout=_tail("".join(out)), stderr=_tail("".join(err)),
                     timed_out=timed_out)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    wanted = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _end_group(proc: subprocess.Popen[str]) -> None:
    """The guard ends the child's whole tree on SIGTERM; its group is killed if it cannot."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def end_processes_of(run_id: str | None, step_id: str | None = None, *,
                     engine_pid: int | None = None) -> list[int]:
    """SIGKILL every process of this machine tagged with ``run_id`` (and ``step_id``, and the
    engine ``engine_pid`` that started it): what an earlier, killed attempt of the run left
    behind, or what an engine that must stop at once started. Returns their pids."""
    wanted = set()
    if run_id is not None:
        wanted.add(f"{RUN_TAG}={run_id}".encode())
    if step_id is not None:
        wanted.add(f"{STEP_TAG}={step_id}".encode())
    if engine_pid is not None:
        wanted.add(f"{ENGINE_TAG}={engine_pid}".encode())
    if not wanted:
        raise ValueError("say whose processes to end")
    return guard.stop_then_kill(lambda: guard.tagged(wanted))


def end_tree(root: int) -> list[int]:
    """SIGKILL ``root`` and every process descended from it, all stopped first (Ansible's
    workers start sessions of their own: a process group signal would miss them)."""
    return guard.stop_then_kill(lambda: guard.tree(root) | {root})


def scratch_root() -> Path:
    """Where files that may hold secrets live while a step runs: memory (``/dev/shm``) when the
    machine has it, never the run's folder on disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


@contextlib.contextmanager
def scratch_dir(run_id: str, step_id: str) -> Iterator[Path]:
    """A private (0700) folder in memory, removed when the step ends."""
    path = Path(tempfile.mkdtemp(prefix=scratch_prefix(run_id) + f"{step_id}-",
                                 dir=scratch_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_scratch_of(run_id: str) -> None:
    """Scratch folders a killed attempt of ``run_id`` could not remove."""
    for path in scratch_root().glob(scratch_prefix(run_id) + "*"):
        shutil.rmtree(path, ignore_errors=True)


def scratch_prefix(run_id: str) -> str:
    return f"runbook-{os.getuid()}-{run_id}-"


def _pump(stream: IO[str] | None, sink: list[str], emit: Callable[[str], None]) -> None:
    if stream is None:
        return
    for line in stream:
        sink.append(line)
        emit(line.rstrip("\n"))
    stream.close()


def _tail(text: str) -> str:
    return text if len(text) <= MAX_KEPT else "…" + text[-MAX_KEPT:]
