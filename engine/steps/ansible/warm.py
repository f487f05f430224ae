"""The engine's side of the warm Ansible worker (``engine/steps/ansible/host.py``), each playbook
run in a child forked from it.

By default the worker is kept warm between runs (``RUNBOOK_KEEP_WARM`` seconds after the last
run that used it, 900 unless set; ``0``: one worker per run, ended with it): the next
command's playbooks start at once instead of after the worker's second of loading. One per
user and Ansible configuration (its environment's ``ANSIBLE_*`` and locale, the
``ansible.cfg`` it would read, the installed Ansible and clients): a run whose configuration
differs gets a worker of its own. It listens in a folder only its user can enter and answers
only that user's processes; it keeps no run's environment or credentials, which each request
brings for its own child.

Each child holds a lifeline from its engine and is tagged with its run and step: a timeout,
an interrupt, the end of the step or the engine's death (SIGKILL included) ends the child's
whole tree and nothing else. A worker that dies fails the step in flight with what it
printed; the next playbook starts a new one. What the child prints is
ansible-runner's event stream (its ``awx_display`` callback), decoded here into the same job
events and artifacts folder ansible-runner writes (``job_events/``, ``stdout``, ``stderr``,
``rc``, ``status``, ``command``), so the rest of the engine cannot tell the two apart.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.steps.ansible import policy
from engine.steps.ansible.events import EventStream
from engine.steps.ansible.kept import Agent, _kept, _kept_place, keep_warm, keep_warm_problem
from engine.steps.ansible.worker import (
    HOST,
    CallTimedOut,
    NotTaken,
    Worker,
    WorkerDied,
    _config_files,
    callback_dir,
)
from engine.system import proc


@dataclass
class _Pool:
    workers: dict[tuple[str, str], Worker] = field(default_factory=dict)


_pool = _Pool()


def current() -> Worker | None:
    """The warm worker of the run in progress, if it has one and it is alive."""
    return next((w for w in _pool.workers.values() if w.alive()), None)


def worker_for(run_id: str, env: Mapping[str, str], cwd: str,
               clients: Iterable[str] | None = None) -> Worker:
    """The run's warm worker for this environment and working folder: the one kept warm for
    this user and configuration (started if need be), or with ``RUNBOOK_KEEP_WARM=0`` one of
    the run's own. ``clients`` (kubernetes, aws, ecr, rds): those its playbooks use, which a
    new worker loads first; None when not known."""
    place = None
    if keep_warm() > 0:
        with contextlib.suppress(OSError):  # /dev/shm full or read-only: a worker per run
            place = _kept_place(env, cwd)
    key = (run_id, str(place) if place is not None else
           json.dumps([sorted(env.items()), cwd, _config_files(env, cwd)]))
    worker = _pool.workers.get(key)
    if worker is not None and worker.alive():
        return worker
    if worker is not None:
        worker.close()
    for other in [k for k in _pool.workers if k[0] != run_id or k == key]:
        _pool.workers.pop(other).close()  # one run's worker at a time
    if place is not None:
        try:
            worker = _kept(run_id, place, env, cwd, clients,
                           policy.home_env(place.with_suffix("")))
        except OSError as exc:
            raise WorkerDied(f"the worker kept at {place} could not start: "
                             f"{exc.strerror or exc}") from exc
    else:
        folder = Path(tempfile.mkdtemp(prefix=proc.scratch_prefix(run_id) + "ansible-",
                                       dir=proc.scratch_root()))
        try:
            worker = Worker(run_id, {**env, **policy.home_env(folder)}, cwd, folder, clients)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    _pool.workers[key] = worker
    return worker


def close_all(*, at_once: bool = False) -> None:
    """End every warm worker of this engine (at the end of a run, and at exit); ``at_once``:
    without waiting for one still loading to notice."""
    while _pool.workers:
        _pool.workers.popitem()[1].close(at_once=at_once)


atexit.register(close_all)


__all__ = ["HOST", "Agent", "CallTimedOut", "EventStream", "NotTaken", "Worker", "WorkerDied",
           "callback_dir", "close_all", "current", "keep_warm", "keep_warm_problem",
           "worker_for"]
