"""The PipelineJob reconciler as a pure function: (job, its runs, clock) → runs to create, cancel and
delete, Events, and the status to write.

Exactly once rests on three things. Every run of a batch has a name derived from the job, the batch (its
scheduled time, or the trigger's id) and the combination's index, so a create that was already done
answers 409. A tick counts as handled when the status says so *or* when runs of it exist: an operator
killed between creating runs and writing the status finishes that batch on its next pass and never takes
the tick as due again. And ticks are only counted after ``status.window.since``, which moves to "now" when
the schedule is edited or the job resumed, so neither makes a tick that fell before it run late.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from orchest_operator import naming
from orchest_operator.builders.common import managed_labels, owner_reference
from orchest_operator.jobs.schedule import Schedule, ScheduleError, due
from orchest_operator.models import (
    API_VERSION,
    GROUP,
    BatchPhase,
    BatchStatus,
    BatchTrigger,
    CombinationStatus,
    Condition,
    ConditionStatus,
    JobConcurrencyPolicy,
    PipelineJobSpec,
    PipelineJobStatus,
    RunPhase,
    ScheduleWindow,
)
from orchest_operator.naming import ANNOTATION_COMBINATION, ANNOTATION_MAX_PARALLEL, LABEL_BATCH, LABEL_JOB
from orchest_operator.pipelinefile import schema_problems
from orchest_operator.runs import Event, parse_time, timestamp

ANNOTATION_SCHEDULED = f"{GROUP}/scheduled-time"
ANNOTATION_TRIGGER_KIND = f"{GROUP}/batch-trigger"
ANNOTATION_TRIGGER = f"{GROUP}/trigger"
"""Set on a PipelineJob (``orchest job trigger``) to ask for one batch now; its value names the batch."""
MAX_BATCHES_SHOWN = 20
MAX_SKIPPED_SHOWN = 3


class Reason:
    """Reasons of the job's ``Ready`` condition and of its Events."""

    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    ONCE = "RunOnce"
    INVALID_SPEC = "InvalidSpec"
    INVALID_SCHEDULE = "InvalidSchedule"
    MISSED = "MissedSchedule"
    SKIPPED = "TickSkipped"
    REPLACED = "BatchReplaced"
    BATCH_CREATED = "BatchCreated"


@dataclass
class JobActions:
    status: dict[str, Any]
    """The complete status the job should have."""
    create: list[dict[str, Any]] = field(default_factory=list)
    """PipelineRun manifests; a 409 on any of them means it exists already."""
    cancel: list[str] = field(default_factory=list)
    """Runs to cancel (``spec.cancel: true``): the batch they belong to was replaced."""
    delete: list[str] = field(default_factory=list)
    """Runs of batches beyond ``batchHistoryLimit``."""
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None
    """When the job needs a pass even if nothing changes: its next tick."""


@dataclass(frozen=True)
class RunView:
    """What the job needs of one of its runs."""

    name: str
    batch: str
    trigger: BatchTrigger
    scheduled: datetime
    index: int
    phase: RunPhase | None
    cancel: bool
    start: datetime | None
    completion: datetime | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> RunView | None:
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        batch = (meta.get("labels") or {}).get(LABEL_BATCH)
        scheduled = parse_time(annotations.get(ANNOTATION_SCHEDULED))
        if not batch or scheduled is None:
            return None
        status = body.get("status") or {}
        try:
            trigger = BatchTrigger(annotations.get(ANNOTATION_TRIGGER_KIND, BatchTrigger.SCHEDULE))
            index = int(annotations.get(ANNOTATION_COMBINATION, "0"))
            phase = RunPhase(status["phase"]) if status.get("phase") else None
        except ValueError:
            return None
        return cls(
            name=meta["name"],
            batch=batch,
            trigger=trigger,
            scheduled=scheduled,
            index=index,
            phase=phase,
            cancel=bool((body.get("spec") or {}).get("cancel")),
            start=parse_time(status.get("startTime")),
            completion=parse_time(status.get("completionTime")),
        )

    @property
    def finished(self) -> bool:
        return self.phase is not None and self.phase.finished


@dataclass(frozen=True)
class JobInputs:
    job: dict[str, Any]
    runs: list[dict[str, Any]]
    """The PipelineRuns labelled with the job's name (the job's own are told apart by owner uid)."""
    now: datetime


def combinations(spec: PipelineJobSpec) -> list[dict[str, Any]]:
    """The batch's parameter combinations: the matrix's cartesian product (parameters in name order, the
    API server keeps no key order), then the ``include`` entries. No matrix and no include: one, empty."""
    names = sorted(spec.matrix)
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(spec.matrix[n] for n in names))
    ]
    found = (grid if names else []) + [dict(extra) for extra in spec.include]
    return found or [{}]


def batch_id(trigger: BatchTrigger, moment: datetime, trigger_value: str | None = None) -> str:
    """``20261206-030000`` for a tick or the creation batch, ``manual-<value>`` for a trigger: label-safe."""
    if trigger is BatchTrigger.MANUAL:
        return naming.derived("manual", trigger_value or moment.strftime("%Y%m%d-%H%M%S"), limit=63)
    return moment.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def run_name(job: str, batch: str, index: int) -> str:
    return naming.derived(job, batch, str(index))


def _owner_uid(body: Mapping[str, Any]) -> str | None:
    refs = body["metadata"].get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


def run_manifest(
    job: Mapping[str, Any],
    spec: PipelineJobSpec,
    batch: str,
    trigger: BatchTrigger,
    scheduled: datetime,
    index: int,
    combination: Mapping[str, Any],
) -> dict[str, Any]:
    """The PipelineRun of one combination of one batch."""
    meta = job["metadata"]
    template = spec.run_template
    annotations = {
        ANNOTATION_SCHEDULED: timestamp(scheduled),
        ANNOTATION_TRIGGER_KIND: trigger.value,
        ANNOTATION_COMBINATION: str(index),
    }
    if spec.max_parallel_runs:
        annotations[ANNOTATION_MAX_PARALLEL] = str(spec.max_parallel_runs)
    run_spec: dict[str, Any] = {
        "pipelineRef": {"name": spec.pipeline_ref.name},
        "selection": template.selection.wire(),
        "parameters": {**spec.parameters, **combination},
        "parallelism": template.parallelism,
        "failurePolicy": template.failure_policy.value,
        "priority": template.priority.value,
        "workspace": template.workspace.value,
        "workspaceExclude": list(template.workspace_exclude),
    }
    if template.timeout_seconds is not None:
        run_spec["timeoutSeconds"] = template.timeout_seconds
    if template.pending_timeout_seconds is not None:
        run_spec["pendingTimeoutSeconds"] = template.pending_timeout_seconds
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {
            "name": run_name(meta["name"], batch, index),
            "namespace": meta["namespace"],
            "labels": managed_labels(
                **{
                    LABEL_JOB: naming.label_value(meta["name"]),
                    LABEL_BATCH: batch,
                    naming.LABEL_PIPELINE: naming.label_value(spec.pipeline_ref.name),
                }
            ),
            "annotations": annotations,
            "ownerReferences": [owner_reference(dict(job))],
        },
        "spec": run_spec,
    }


def _condition(status: PipelineJobStatus, ok: bool, reason: str, message: str, now: str) -> None:
    value = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
    old = next((c for c in status.conditions if c.type == "Ready"), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    ready = Condition(type="Ready", status=value, reason=reason, message=message, last_transition_time=since)
    status.conditions = [c for c in status.conditions if c.type != "Ready"] + [ready]


_STATUS_KEYS = {f.alias or n for n, f in PipelineJobStatus.model_fields.items()}


def current_status(job: Mapping[str, Any]) -> PipelineJobStatus:
    """The job's status as last written. Keys this version does not know are ignored, and a field it
    cannot read (written by another version, or by hand) is dropped alone: the ticks already handled must
    not be forgotten with it."""
    raw = {k: v for k, v in (job.get("status") or {}).items() if k in _STATUS_KEYS}
    try:
        return PipelineJobStatus.model_validate(raw)
    except ValidationError:
        readable = {}
        for key, value in raw.items():
            try:
                PipelineJobStatus.model_validate({key: value})
            except ValidationError:
                continue
            readable[key] = value
        return PipelineJobStatus.model_validate(readable)


class _Pass:
    """One reconcile pass: the job's runs grouped by batch, and what the pass decides."""

    def __init__(
        self, job: dict[str, Any], spec: PipelineJobSpec, runs: Iterable[RunView], now: datetime
    ) -> None:
        self.job, self.spec, self.now = job, spec, now
        self.combos = combinations(spec)
        self.runs: dict[str, list[RunView]] = {}
        for run in sorted(runs, key=lambda r: r.index):
            self.runs.setdefault(run.batch, []).append(run)
        self.new: dict[str, tuple[BatchTrigger, datetime]] = {}
        """Batches this pass creates or completes, with their trigger and scheduled time."""
        self.actions = JobActions(status={})

    def create(self, batch: str, trigger: BatchTrigger, scheduled: datetime) -> None:
        """Every run of ``batch`` that does not exist yet."""
        existing = {r.name for r in self.runs.get(batch, [])}
        missing = []
        for index, combo in enumerate(self.combos):
            if run_name(self.job["metadata"]["name"], batch, index) not in existing:
                missing.append(run_manifest(self.job, self.spec, batch, trigger, scheduled, index, combo))
        self.actions.create += missing
        if batch not in self.new:
            self.new[batch] = (trigger, scheduled)
        if missing:
            what = f"{len(self.combos)} run(s)"
            if trigger is BatchTrigger.SCHEDULE:
                what += f" for the tick at {timestamp(scheduled)}"
            self.actions.events.append(Event("Normal", Reason.BATCH_CREATED, f"batch {batch}: {what}"))

    def active(self) -> list[str]:
        running = [b for b, runs in self.runs.items() if any(not r.finished for r in runs)]
        return sorted(set(running) | set(self.new))

    def latest_scheduled(self) -> datetime | None:
        times = [
            r.scheduled for runs in self.runs.values() for r in runs if r.trigger is BatchTrigger.SCHEDULE
        ]
        return max(times, default=None)

    def tick(self, tick: datetime, status: PipelineJobStatus) -> None:
        """One due tick, under the job's concurrency policy."""
        name = batch_id(BatchTrigger.SCHEDULE, tick)
        active = [b for b in self.active() if b != name]
        policy = self.spec.concurrency_policy
        if active and policy is JobConcurrencyPolicy.FORBID:
            message = f"skipped: batch {active[0]} is still running (concurrencyPolicy: Forbid)"
            skipped = BatchStatus(
                id=name,
                trigger=BatchTrigger.SCHEDULE,
                scheduled_time=timestamp(tick),
                phase=BatchPhase.SKIPPED,
                message=message,
            )
            status.batches = [skipped, *(b for b in status.batches if b.id != name)]
            self.actions.events.append(Event("Normal", Reason.SKIPPED, f"tick {timestamp(tick)} {message}"))
            return
        if active and policy is JobConcurrencyPolicy.REPLACE:
            cancel = [
                run.name
                for batch in active
                for run in self.runs.get(batch, [])
                if not run.finished and not run.cancel
            ]
            if cancel:
                self.actions.cancel += cancel
                message = f"batch(es) {', '.join(active)} cancelled for the tick at {timestamp(tick)}"
                self.actions.events.append(Event("Normal", Reason.REPLACED, message))
        self.create(name, BatchTrigger.SCHEDULE, tick)

    def summarise(self, status: PipelineJobStatus) -> None:
        """Batch records, history pruning and the counts of the status."""
        records: list[BatchStatus] = [b for b in status.batches if b.phase is BatchPhase.SKIPPED]
        created = {m["metadata"]["name"] for m in self.actions.create}
        active_runs = 0
        for batch in set(self.runs) | set(self.new):
            runs = self.runs.get(batch, [])
            trigger, scheduled = self.new.get(batch) or (runs[0].trigger, runs[0].scheduled)
            counts: dict[str, int] = {}
            for run in runs:
                phase = (run.phase or RunPhase.PENDING).value
                counts[phase] = counts.get(phase, 0) + 1
            pending = sum(1 for m in self.actions.create if m["metadata"]["labels"][LABEL_BATCH] == batch)
            if pending:
                counts[RunPhase.PENDING.value] = counts.get(RunPhase.PENDING.value, 0) + pending
            unfinished = pending + sum(1 for r in runs if not r.finished)
            active_runs += unfinished
            done = [r.completion for r in runs if r.completion is not None]
            phase = (
                BatchPhase.RUNNING
                if unfinished
                else BatchPhase.SUCCEEDED
                if all(r.phase is RunPhase.SUCCEEDED for r in runs)
                else BatchPhase.FAILED
            )
            records.append(
                BatchStatus(
                    id=batch,
                    trigger=trigger,
                    scheduled_time=timestamp(scheduled),
                    phase=phase,
                    runs=len(runs) + pending,
                    counts=counts,
                    completion_time=timestamp(max(done)) if done and not unfinished else None,
                )
            )
        records.sort(key=lambda b: (b.scheduled_time, b.id), reverse=True)
        # History: finished batches beyond the limit go, oldest first; never one this pass is completing.
        kept_finished = 0
        shown: list[BatchStatus] = []
        for record in records:
            prunable = record.phase in (BatchPhase.SUCCEEDED, BatchPhase.FAILED) and record.id not in self.new
            if prunable:
                kept_finished += 1
                if kept_finished > self.spec.batch_history_limit:
                    self.actions.delete.extend(r.name for r in self.runs.get(record.id, []))
                    continue
            shown.append(record)
        newest = next((b for b in shown if b.phase is not BatchPhase.SKIPPED), None)
        if newest is not None:
            rows = {r.index: r for r in self.runs.get(newest.id, [])}
            table = []
            for index in range(max(len(self.combos), max(rows, default=-1) + 1)):
                run = rows.get(index)
                name = run.name if run else run_name(self.job["metadata"]["name"], newest.id, index)
                if run is None and name not in created:
                    continue
                table.append(
                    CombinationStatus(
                        index=index,
                        run=name,
                        phase=run.phase if run else None,
                        duration_seconds=_duration(run, self.now) if run else None,
                    )
                )
            newest.combinations = table
        # Skipped ticks are worth a look, but never at the cost of a batch that ran.
        skipped = [b for b in shown if b.phase is BatchPhase.SKIPPED][:MAX_SKIPPED_SHOWN]
        real = [b for b in shown if b.phase is not BatchPhase.SKIPPED][: MAX_BATCHES_SHOWN - len(skipped)]
        status.batches = sorted(real + skipped, key=lambda b: (b.scheduled_time, b.id), reverse=True)
        status.active = sorted(b.id for b in shown if b.phase is BatchPhase.RUNNING)
        status.active_runs = active_runs
        status.last_batch = newest.id if newest else None
        status.last_batch_phase = newest.phase if newest else None


def _duration(run: RunView, now: datetime) -> int | None:
    if run.start is None:
        return None
    return int(((run.completion or now) - run.start).total_seconds())


def reconcile(inputs: JobInputs) -> JobActions:
    job, now = inputs.job, inputs.now
    meta = job["metadata"]
    stamp = timestamp(now)
    status = current_status(job)
    status.observed_generation = meta.get("generation")
    try:
        spec = PipelineJobSpec.model_validate(job.get("spec") or {})
    except ValidationError as err:
        message = "; ".join(f"spec.{line}" for line in schema_problems(err, PipelineJobSpec))
        _condition(status, False, Reason.INVALID_SPEC, message, stamp)
        return JobActions(status=status.wire())

    uid = meta.get("uid")
    views = [RunView.of(r) for r in inputs.runs if _owner_uid(r) == uid]
    work = _Pass(job, spec, (v for v in views if v is not None), now)

    # 1. A batch whose creation an earlier pass began (then died) is completed, whatever the clock says.
    last_handled = parse_time(status.last_schedule_time)
    for name, runs in work.runs.items():
        first = runs[0]
        scheduled_unrecorded = first.trigger is BatchTrigger.SCHEDULE and (
            last_handled is None or first.scheduled > last_handled
        )
        if scheduled_unrecorded or (first.trigger is BatchTrigger.CREATED and status.window is None):
            work.create(name, first.trigger, first.scheduled)
    latest_run = work.latest_scheduled()
    if latest_run is not None and (last_handled is None or latest_run > last_handled):
        last_handled = latest_run

    # 2. The window of ticks that count: it restarts on an edit of the schedule and on a resume.
    schedule_text = spec.schedule or ""
    window = status.window
    if window is None:
        created = parse_time(meta.get("creationTimestamp")) or now
        window = ScheduleWindow(schedule=schedule_text, time_zone=spec.time_zone, since=timestamp(created))
        if spec.schedule is None and not spec.suspend:
            work.create(batch_id(BatchTrigger.CREATED, created), BatchTrigger.CREATED, created)
    elif (window.schedule, window.time_zone) != (schedule_text, spec.time_zone) or (
        window.suspended and not spec.suspend
    ):
        window = ScheduleWindow(schedule=schedule_text, time_zone=spec.time_zone, since=stamp)
    status.window = window.model_copy(update={"suspended": spec.suspend})

    # 3. A manual trigger: one batch per annotation value, whatever the schedule, suspension or policy.
    trigger = (meta.get("annotations") or {}).get(ANNOTATION_TRIGGER)
    if trigger and trigger != status.last_trigger:
        work.create(batch_id(BatchTrigger.MANUAL, now, trigger), BatchTrigger.MANUAL, now)
        status.last_trigger = trigger

    # 4. The schedule.
    status.next_schedule_time = None
    if spec.schedule is None:
        _condition(status, True, Reason.ONCE, "no schedule: one batch at creation, more on a trigger", stamp)
    else:
        last_handled = _schedule(work, status, window, last_handled)
    if last_handled is not None:
        status.last_schedule_time = timestamp(last_handled)
    work.summarise(status)
    work.actions.status = status.wire()
    return work.actions


def _schedule(
    work: _Pass, status: PipelineJobStatus, window: ScheduleWindow, last_handled: datetime | None
) -> datetime | None:
    """Run the due tick, record the missed ones, and say when the next falls; the latest tick handled."""
    spec, now, stamp = work.spec, work.now, timestamp(work.now)
    assert spec.schedule is not None
    try:
        schedule = Schedule.parse(spec.schedule, spec.time_zone)
    except ScheduleError as err:
        _condition(status, False, Reason.INVALID_SCHEDULE, str(err), stamp)
        return last_handled
    if spec.suspend:
        _condition(status, True, Reason.SUSPENDED, "suspended: no tick runs, and none runs later", stamp)
        return last_handled
    since = max(t for t in (parse_time(window.since), last_handled) if t is not None)
    found = due(schedule, since, now, spec.starting_deadline_seconds)
    if found.missed:
        status.missed_ticks += found.missed
        span = timestamp(found.first_missed) if found.first_missed else "?"
        if found.missed > 1 and found.last_missed is not None:
            span += f" to {timestamp(found.last_missed)}"
        message = (
            f"{found.missed} tick(s) will never run ({span}): the operator was away then, and only the "
            "latest tick runs late, within startingDeadlineSeconds"
        )
        work.actions.events.append(Event("Warning", Reason.MISSED, message))
        if found.last_missed is not None:
            last_handled = max(t for t in (last_handled, found.last_missed) if t is not None)
    if found.tick is not None:
        last_handled = found.tick
        work.tick(found.tick, status)
    status.next_schedule_time = timestamp(found.next)
    work.actions.wake_at = found.next
    _condition(status, True, Reason.SCHEDULED, f"next tick at {status.next_schedule_time}", stamp)
    return last_handled
