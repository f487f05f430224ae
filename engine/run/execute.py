"""Walk a Plan step by step: dispatch by step type, retry, checkpoint, report.

A checkpoint is written before a step starts (status ``running``) and again, in one
transaction, once it has ended. A process killed in between leaves ``running``: resume runs
that step again. Nothing is written in a dry run.

An interrupt (Ctrl-C, SIGTERM, ``runbook abort``) is never a failure: whatever the step type
made of it, the step and the run end ``interrupted`` (or ``aborted``) and no ``on_failure``
step runs. The store keeps an aborted or done run as it is, whatever this process writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.clock import Clock, iso
from engine.errors import InvalidInput, StepFailed, StepRefused, StepRetryable, WaitingForApproval
from engine.language.model import Outcome, Runbook, Step
from engine.language.render import Deferred
from engine.run.evaluate import (
    evaluate,
    note_step,
    pending,
    pending_results,
    remember,
    remember_done,
    skip,
)
from engine.run.plan import Plan, bind, plan_hash
from engine.run.report import Reporter
from engine.status import ENDED, STEP_DONE, RunStatus, StepStatus
from engine.steps import STEP_TYPES, StepContext, finish_all
from engine.steps.base import APPROVALS, STORE, StepType
from engine.store import ApprovalAlreadyUsed, StateStore, StepRecord
from engine.system import interrupts


@dataclass(frozen=True)
class StepReport:
    step_id: str
    name: str
    status: StepStatus
    message: str = ""
    seconds: float = 0.0
    attempts: int = 0
    result: Mapping[str, Any] | None = None
    rendered: Mapping[str, Any] | None = None
    needs: str | None = None  # a dry run could not render it without this result


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: RunStatus
    message: str
    steps: tuple[StepReport, ...]
    waiting_for: str | None = None
    plan_hash: str = ""  # with what the runbook binds, as this run (or dry run) resolved it
    bound: Mapping[str, Any] = field(default_factory=dict)


class Aborted(Exception):
    pass


class Executor:
    def __init__(self, plan: Plan, *, run_id: str, store: StateStore | None, reporter: Reporter,
                 clock: Clock, workdir: Path, checkpoints: Mapping[str, StepRecord],
                 dry_run: bool = False) -> None:
        self.plan = plan
        self.run_id = run_id
        self.store = store
        self.reporter = reporter
        self.clock = clock
        self.workdir = workdir
        self.checkpoints = dict(checkpoints)
        self.dry_run = dry_run
        self.reports: list[StepReport] = []
        self.context: dict[str, Any] = {**plan.variables, "facts": {},
                                        **pending_results(plan.runbook)}
        given = store.approvals(run_id) if store and not dry_run else []
        # The journal is the truth: an approval row without its record is not counted.
        unrecorded = store.unrecorded_approvals(given) if store and given else set()
        self._approvals = [a for a in given if a not in unrecorded]
        self._unrecorded = [a for a in given if a in unrecorded]
        self._gate_inputs: dict[str, Any] = {
            "plan_hash": plan.hash, "runbook": plan.runbook.name,
            "runbook_sha": plan.runbook.sha256, "inventory_sha": plan.inventory.sha256,
            "params": dict(plan.params), "bound": {}}
        self._bound = False
        self._current: StepRecord | None = None  # the step in flight
        self._steps_by_id = {s.id: s for s in plan.runbook.all_steps()}

    def run(self) -> RunResult:
        try:
            self._prepare()
            failed = self._steps(self.plan.runbook.steps, allow_done=True)
        except WaitingForApproval as wait:
            return self._finish(RunStatus.WAITING, f"waiting for approval of step {wait.step_id}: "
                                f"{wait.prompt}", waiting_for=wait.step_id)
        except Aborted:
            return self._finish(RunStatus.ABORTED, "the run was aborted")
        except StepRefused as refused:
            return self._finish(RunStatus.REFUSED, str(refused))
        except KeyboardInterrupt:
            self._interrupted()
            if self._aborted():
                return self._finish(RunStatus.ABORTED, "the run was aborted")
            return self._finish(RunStatus.INTERRUPTED, "interrupted")
        if failed:
            return self._finish(RunStatus.FAILED, failed)
        if self.dry_run and not self._bound:
            self._bind(None)
        return self._finish(RunStatus.PLANNED if self.dry_run else RunStatus.DONE, "")

    def _prepare(self) -> None:
        prepare_ahead(self.run_id, self.plan.runbook, self.checkpoints)

    def _interrupted(self) -> None:
        """The step in flight when the interrupt came, if nothing recorded its end."""
        if self._current is not None:
            now = iso(self.clock.now())
            self._save(replace(self._current, status=StepStatus.INTERRUPTED, ended_at=now))
            self._current = None

    def _finish(self, status: RunStatus, message: str, waiting_for: str | None = None) -> RunResult:
        message = self.plan.redactor.text(message)
        finish_all()  # what the step types started for the run (the warm Ansible worker)
        if self.store and not self.dry_run:
            # The run has stopped: a signal now changes nothing in how it ended.
            with interrupts.shielded(deliver=False):
                now = iso(self.clock.now())
                ended = None if status == RunStatus.WAITING else now  # a waiting run has not ended
                if not self.store.set_run_status(self.run_id, status, ended_at=ended,
                                                 message=message, at=now):
                    # Aborted (or ended) by someone else meanwhile: that is how it ended.
                    current = self.store.get_run(self.run_id)
                    if current is not None:
                        status, message = current.status, current.message
                if status in ENDED and self.plan.lock_env:
                    self.store.release_lock(self.plan.lock_env, run_id=self.run_id, at=now,
                                            reason=f"run {status}")
        self.reporter.run_finished(self.run_id, status, message)
        return RunResult(self.run_id, RunStatus(status), message, tuple(self.reports), waiting_for,
                         self._gate_inputs["plan_hash"], self._gate_inputs["bound"])

    def _bind(self, step: Step | None) -> str:
        """Resolve what the runbook binds, before an approval step counts approvals: the
        approvals given to a plan count only if this hash, bound values included, is the
        plan's. Returns the failure, or ''."""
        book = self.plan.runbook
        if not book.bind:
            return ""
        values, missing = bind(book, self.context)
        if missing and not self.dry_run:
            name, needs = next(iter(missing.items()))
            return (f"metadata.bind.{name} needs the result of {needs!r}, which is not known "
                    f"before step {step.id if step else 'the end'}: bind only what the steps "
                    "before the first approval step register")
        values.update({n: f"(not known in a plan: needs {needs})"
                       for n, needs in missing.items()})
        shown = self.plan.redactor.value(values)
        self._gate_inputs["bound"] = shown
        self._gate_inputs["plan_hash"] = plan_hash(book, self.plan.inventory, self.plan.params,
                                                   shown)
        self._bound = True
        return ""

    def _steps(self, steps: tuple[Step, ...], *, allow_done: bool) -> str:
        """Run ``steps`` in order; return the failure message, or '' if all went well."""
        for step in steps:
            failure = self._step(step, allow_done=allow_done)
            if failure:
                if step.on_failure:
                    self._steps(step.on_failure, allow_done=False)
                return failure
        return ""

    def _step(self, step: Step, *, allow_done: bool) -> str:
        self._check_not_aborted()
        record = self.checkpoints.get(step.id)
        try:
            ev = evaluate(step, self.context, self.plan.runbook, self.plan.redactor, record)
        except InvalidInput as exc:
            return self._failed_early(step, exc.render())
        if ev.deferred_on is not None:
            return self._deferred(step, ev.deferred_on)
        if ev.when is False:
            return self._skipped(step)
        name, spec, fp = ev.name, dict(ev.spec or {}), str(ev.fingerprint)
        shown = dict(ev.shown or {})
        kind = STEP_TYPES[step.type]
        if allow_done and ev.done and record is not None:
            remember_done(step, record, self.context)
            self._report(StepReport(step.id, name, StepStatus.DONE,
                                    "done in an earlier attempt of this run",
                                    attempts=record.attempts, result=record.result))
            return ""
        if kind.gate:
            failure = self._bind(step)
            if failure:
                return self._failed_early(step, failure)
        same = record is not None and record.fingerprint == fp and record.status not in STEP_DONE
        attempts = record.attempts if same and record else 0
        if same and record and record.status == StepStatus.WAITING:
            attempts -= 1  # waiting for a person is not a failed attempt
        started = iso(self.clock.now())
        t0 = time.monotonic()
        tries = 0
        while True:
            attempts += 1
            tries += 1
            base = StepRecord(self.run_id, step.id, StepStatus.RUNNING, attempts, started, fp)
            self._current = base
            self._save(base)
            self.reporter.step_started(step.id, name, attempts)
            ctx = StepContext(run_id=self.run_id, step=step, spec=spec, variables=ev.seen,
                              dry_run=self.dry_run, workdir=self.workdir / step.id,
                              clock=self.clock,
                              runbook_dir=step_folder(step, self.plan.runbook),
                              emit=self._emitter(step.id), redact=self.plan.redactor.text,
                              # Only what its type asks for, besides its body.
                              approvals=self._approvals if APPROVALS in kind.needs else [],
                              unrecorded=self._unrecorded if APPROVALS in kind.needs else [],
                              gate_inputs=self._gate_inputs if APPROVALS in kind.needs else {},
                              store=self.store if STORE in kind.needs else None)
            try:
                outcome = _call(step.type, ctx)
            except (StepFailed, StepRetryable) as exc:
                delay = exc.delay if isinstance(exc, StepRetryable) else step.delay
                result = exc.result if isinstance(exc, StepFailed) else {}
                if tries <= step.retries:
                    self.reporter.step_output(step.id, f"attempt {attempts} failed: {exc}; "
                                              f"retrying in {delay:g} s")
                    self.clock.sleep(delay)
                    continue
                return self._end(base, name, StepStatus.FAILED, str(exc), result, t0)
            except WaitingForApproval as exc:
                self._end(base, name, StepStatus.WAITING, exc.prompt, exc.result, t0)
                raise
            except StepRefused as exc:
                self._end(base, name, StepStatus.REFUSED, str(exc), {}, t0)
                raise
            except KeyboardInterrupt:
                self._end(base, name, StepStatus.INTERRUPTED, "interrupted", {}, t0)
                raise
            except Deferred as exc:
                return self._deferred(step, exc.name)
            except InvalidInput as exc:
                return self._end(base, name, StepStatus.FAILED, exc.render(), {}, t0)
            except Exception as exc:  # a bug in a step type must still leave a clean record
                return self._end(base, name, StepStatus.FAILED,
                                 f"unexpected error: {type(exc).__name__}: {exc}", {}, t0)
            uses = outcome.result.get("plan_approvals_used") if kind.gate else None
            try:
                self._end(base, name, outcome.status, outcome.message, outcome.result, t0, shown,
                          uses=uses or ())
            except ApprovalAlreadyUsed as used:  # another run passed its gate with it first
                self._end(base, name, StepStatus.WAITING, str(used), outcome.result, t0)
                raise WaitingForApproval(step.id, str(used), outcome.result) from None
            if outcome.status == StepStatus.WOULD_RUN:
                pending(step, self.context)
            else:
                remember(step, outcome.result, self.context)
            return ""

    def _end(self, base: StepRecord, name: str, status: StepStatus, message: str,
             result: Mapping[str, Any], t0: float,
             rendered: Mapping[str, Any] | None = None,
             uses: Sequence[Mapping[str, str]] = ()) -> str:
        redactor = self.plan.redactor
        message = redactor.text(message)
        shown = redactor.value(dict(result))
        final = replace(base, status=status, ended_at=iso(self.clock.now()), result=shown,
                        error=message if status == StepStatus.FAILED else "")
        self._save(final, uses)
        self._current = None
        note_step(self.context, self._steps_by_id[base.step_id], final)
        self._report(StepReport(base.step_id, name, status, message,
                                round(time.monotonic() - t0, 3), base.attempts, shown, rendered))
        return message if status in (StepStatus.FAILED, StepStatus.REFUSED) else ""

    def _skipped(self, step: Step) -> str:
        skip(step, self.context)
        now = iso(self.clock.now())
        self._save(StepRecord(self.run_id, step.id, StepStatus.SKIPPED, 0, now, "", ended_at=now,
                              result={"skipped": True}))
        self._report(StepReport(step.id, step.name, StepStatus.SKIPPED, "condition is false"))
        return ""

    def _deferred(self, step: Step, needs: str) -> str:
        if not self.dry_run:
            return self._failed_early(step, f"result {needs!r} is not available")
        pending(step, self.context)
        self._report(StepReport(step.id, step.name, StepStatus.WOULD_RUN,
                                f"decided at run time (needs the result of {needs!r})",
                                needs=needs))
        return ""

    def _emitter(self, step_id: str) -> Callable[[str], None]:
        def emit(line: str) -> None:
            self.reporter.step_output(step_id, self.plan.redactor.text(line))
        return emit

    def _failed_early(self, step: Step, message: str) -> str:
        self._current = None  # its end is this record: an interrupt now does not change it
        now = iso(self.clock.now())
        self._save(StepRecord(self.run_id, step.id, StepStatus.FAILED, 0, now, "", ended_at=now,
                              error=message))
        self._report(StepReport(step.id, step.name, StepStatus.FAILED, message))
        return message

    def _report(self, report: StepReport) -> None:
        self.reports.append(report)
        self.reporter.step_finished(report.step_id, report.name, report.status, report.message,
                                    report.seconds)

    def _save(self, record: StepRecord, uses: Sequence[Mapping[str, str]] = ()) -> None:
        """Checkpoint; a gate that passed with approvals given to a plan uses them up in the
        same transaction, so no other run can pass its gate with them."""
        if self.store and not self.dry_run:
            with interrupts.shielded():
                self.store.save_step(record, uses=uses)

    def _check_not_aborted(self) -> None:
        if self._aborted():
            raise Aborted

    def _aborted(self) -> bool:
        if self.store is None or self.dry_run:
            return False
        run = self.store.get_run(self.run_id)
        return run is not None and run.status == RunStatus.ABORTED


def _call(step_type: str, ctx: StepContext) -> Outcome:
    """Run a step; once an interrupt has come, the step was interrupted, whatever the step
    type (or a library it calls) made of it: a caught KeyboardInterrupt, a killed child's
    exit code read as a failure."""
    try:
        outcome = STEP_TYPES[step_type].run(ctx)
    except Exception:
        if interrupts.stopping():
            raise KeyboardInterrupt from None
        raise
    if interrupts.stopping():
        raise KeyboardInterrupt
    return outcome


__all__ = ["Executor", "Outcome", "RunResult", "StepReport"]


def prepare_ahead(run_id: str, runbook: Runbook,
                  checkpoints: Mapping[str, StepRecord] | None = None) -> None:
    """What the step types to run before the next gate can start ahead (the warm Ansible
    worker loads while the steps before the first playbook run; Apprise while those before
    the first message run); nothing beyond a gate not yet waited at: the run may stop there,
    and whatever was started would be for nothing. Calling it again is harmless."""
    checkpoints = checkpoints or {}
    todo = [step for step in runbook.all_steps()
            if step.id not in checkpoints or checkpoints[step.id].status not in STEP_DONE]
    wanted: dict[str, StepType] = {}
    for step in todo:
        kind = STEP_TYPES[step.type]
        # A gate the run waited at is resumed once it is expected to pass (someone approved):
        # what comes after it is prepared; a gate not reached yet may stop the run.
        waited = step.id in checkpoints and checkpoints[step.id].status == StepStatus.WAITING
        if kind.gate and not waited:
            break
        if kind.prepare is not None:
            wanted.setdefault(step.type, kind)
    steps = [(s, step_folder(s, runbook)) for s in todo]
    # Steps that only inform (messages) last: they use the warm worker if one is started.
    for kind in sorted(wanted.values(), key=lambda k: k.informs):
        assert kind.prepare is not None
        kind.prepare(run_id, steps)


def step_folder(step: Step, runbook: Runbook) -> Path:
    """The folder a step's relative paths start from: the file it is written in."""
    return Path(step.file).parent if step.file else runbook.path.parent
