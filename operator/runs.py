"""The PipelineRun reconciler as a pure function: (run, pipeline, observed Jobs and pods, clock) → actions.

The kopf glue in ``handlers/runs.py`` gathers the inputs and carries out the ``Actions``; everything that
decides lives here and is tested without a cluster. The ladder follows Tekton's reconciler: finished →
nothing; new → initialise (resolve and snapshot the Pipeline, or fail with a reason); queued → wait;
then observe steps, ask ``facts.decide`` what to do, and write the status that results.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ValidationError

from orchest_operator import naming
from orchest_operator.builders.job import WORKSPACE_STEP, JobOptions, step_job, workspace_job
from orchest_operator.builders.plan import plan_job
from orchest_operator.cache.runplan import PLAN_STEP, decode, wants_plan
from orchest_operator.dag import Dag, PlanError
from orchest_operator.facts import Decision, Reason, decide, progress
from orchest_operator.models import (
    CachePlan,
    Condition,
    ConditionStatus,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    RunSnapshot,
    StepPhase,
    StepStatus,
    Workspace,
)
from orchest_operator.observe import JobView, PodView, observe_step
from orchest_operator.pipelinefile import schema_problems
from orchest_operator.stuck import PENDING_TIMEOUT, Cause, family

DEFAULT_PENDING_TIMEOUT = 600
WORKSPACE_COPY_SECONDS = 3600
"""How long an isolated run's copy may take once its pod runs: a copy that cannot start (or hangs) fails the
run with the Job's DeadlineExceeded instead of holding it forever."""
"""Seconds a step may wait for its pod to run when neither the run nor its Pipeline sets
``pendingTimeoutSeconds``."""


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Actions:
    status: dict[str, Any]
    """The complete status the run should have; the glue patches only what differs."""
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    """Kubernetes Events: the run's start and end; a Warning for each failed step and for each cause that
    keeps a step from starting; each step's start and success up to ``Inputs.step_events_limit`` steps,
    above it the quarters of the run's progress (a 1000-step run would post 2000 step Events)."""
    check: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Steps whose pods should be checked for a reason they do not run: step → its Job's name and uid."""
    patch_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Job name → merge patch: a running step's deadline, counted from when its pod began to run."""
    wake_in: float | None = None
    """Seconds until this run needs a pass although nothing may report anything: its next check or the
    pending deadline of a step."""
    dag: Dag | None = None
    """The DAG of the run's snapshot, for the caller to hand back next time (the snapshot never changes)."""
    model: PipelineRunStatus | None = None
    """``status`` as a model, once the run has started: what the caller may hand back as ``Inputs.status``
    when the run shows this status next."""

    @property
    def phase(self) -> RunPhase:
        return RunPhase(self.status.get("phase", RunPhase.PENDING))


@dataclass
class Observed:
    jobs: Mapping[str, JobView] = field(default_factory=dict)
    """Step name → its Job, as the Job index shows it."""
    pods: Collection[PodView] = ()
    in_flight: Collection[str] = ()
    """Names of Jobs this process created that the index has not shown yet."""
    rejected: Mapping[str, str] = field(default_factory=dict)
    """Step name → why the API server refused its Job for good (quota aside): the step fails with it."""
    blocked: Mapping[str, str] = field(default_factory=dict)
    """Step name → why its Job could not be created yet (its name is still held by a deleted run's Job):
    the step is started again on the next pass instead of being taken for lost."""
    causes: Mapping[str, Cause] = field(default_factory=dict)
    """Step name → why its pod does not run, as the last check found it (``stuck.causes``)."""
    checked: Mapping[str, datetime] = field(default_factory=dict)
    """Step name → when its pod was last checked."""


@dataclass
class Inputs:
    run: dict[str, Any]
    pipeline: dict[str, Any] | None
    observed: Observed
    now: datetime
    options: JobOptions
    earlier: dict[str, Any] | None = None
    """The run named by ``spec.rerunOf``, when there is one."""
    waiting_for: str | None = None
    """The run this one queues behind (concurrency policy), or ``None`` when it may start."""
    forbidden_by: str | None = None
    """An active run that makes this one fail at once under ``concurrencyPolicy: Forbid``."""
    dag: Dag | None = None
    """The DAG this run's snapshot gave last time, if the caller kept it: building a 1000-step DAG (checks,
    cycle search, ordering) costs tens of milliseconds, every pass."""
    status: PipelineRunStatus | None = None
    """The run's status already parsed (``current_status``), if the caller has it: validating a 1000-step
    run's status costs about 15 ms. It is not changed here."""
    check_after: float = 5.0
    """Seconds after its Job was created before a step that shows no running pod is first checked."""
    check_every: float = 10.0
    """Seconds between two checks of a step that still does not run."""
    step_events_limit: int = 100
    """Runs of up to this many steps get an Event for each step's start and success."""


_STATUS_KEYS = {f.alias or n for n, f in PipelineRunStatus.model_fields.items()}


def current_status(run: dict[str, Any]) -> PipelineRunStatus:
    """The run's status as last written; keys this version does not know (another tool's) are ignored."""
    raw = run.get("status") or {}
    return PipelineRunStatus.model_validate({k: v for k, v in raw.items() if k in _STATUS_KEYS})


def _set_condition(status: PipelineRunStatus, phase: RunPhase, reason: str, message: str, now: str) -> None:
    status.phase = phase
    cond_status = (
        ConditionStatus.TRUE
        if phase is RunPhase.SUCCEEDED
        else ConditionStatus.FALSE
        if phase.finished
        else ConditionStatus.UNKNOWN
    )
    old = next((c for c in status.conditions if c.type == "Succeeded"), None)
    changed = old is None or old.status != cond_status or old.reason != reason
    cond = Condition(
        status=cond_status,
        reason=reason,
        message=message,
        last_transition_time=now if changed or old is None else old.last_transition_time,
    )
    status.conditions = [c for c in status.conditions if c.type != "Succeeded"] + [cond]
    if phase.finished and status.completion_time is None:
        status.completion_time = now


def _spec_problems(err: ValidationError, model: type[BaseModel]) -> str:
    """The same readable ``field.path: problem`` lines ``orchest validate`` prints, under ``spec.``."""
    return "; ".join(f"spec.{line}" for line in schema_problems(err, model))


def _finish_early(
    status: PipelineRunStatus, generation: int | None, reason: str, message: str, now: str
) -> Actions:
    status.observed_generation = generation
    _set_condition(status, RunPhase.FAILED, reason, message, now)
    return Actions(status=status.wire(), events=[Event("Warning", reason, message)])


def _initialise(inputs: Inputs, spec: PipelineRunSpec, status: PipelineRunStatus, now: str) -> Actions | Dag:
    """Resolve the Pipeline and freeze what runs: the snapshot's DAG, or the ``Actions`` of a run that
    failed here."""
    generation = inputs.run["metadata"].get("generation")
    pipeline_name = spec.pipeline_ref.name
    previous: dict[str, StepPhase] | None = None
    workspace_from: str | None = None
    if spec.rerun_of:
        earlier = inputs.earlier
        if earlier is None:
            return _finish_early(
                status,
                generation,
                Reason.RERUN_INVALID,
                f"run {spec.rerun_of!r} to rerun does not exist",
                now,
            )
        earlier_status = current_status(earlier)
        if earlier["spec"]["pipelineRef"]["name"] != pipeline_name:
            msg = f"run {spec.rerun_of!r} belongs to pipeline {earlier['spec']['pipelineRef']['name']!r}"
            return _finish_early(status, generation, Reason.RERUN_INVALID, msg, now)
        if not earlier_status.phase.finished or earlier_status.snapshot is None:
            msg = (
                f"run {spec.rerun_of!r} is still {earlier_status.phase.value}; rerun it once it has finished"
            )
            return _finish_early(status, generation, Reason.RERUN_INVALID, msg, now)
        if earlier["spec"].get("workspace") == Workspace.ISOLATED:
            if spec.workspace is not Workspace.ISOLATED:
                msg = (
                    f"run {spec.rerun_of!r} worked in an isolated workspace, where the outputs to reuse are: "
                    "rerun it with workspace: Isolated"
                )
                return _finish_early(status, generation, Reason.RERUN_INVALID, msg, now)
            workspace_from = spec.rerun_of
        pipeline = earlier_status.snapshot.pipeline
        previous = {n: s.phase for n, s in earlier_status.steps.items()}
        selected = earlier_status.snapshot.selected
    else:
        if inputs.pipeline is None:
            msg = f"pipeline {pipeline_name!r} not found in namespace {inputs.run['metadata']['namespace']!r}"
            return _finish_early(status, generation, Reason.PIPELINE_NOT_FOUND, msg, now)
        try:
            pipeline = PipelineSpec.model_validate(inputs.pipeline.get("spec") or {})
        except ValidationError as err:
            return _finish_early(
                status, generation, Reason.INVALID_PIPELINE, _spec_problems(err, PipelineSpec), now
            )
        selected = []
    try:
        dag = Dag.of(pipeline)
    except PlanError as err:
        return _finish_early(status, generation, Reason.INVALID_PIPELINE, "; ".join(err.problems), now)
    if pipeline.volume is None:
        msg = f"pipeline {pipeline_name!r} has no spec.volume: a cluster run needs a PersistentVolumeClaim"
        return _finish_early(status, generation, Reason.NO_VOLUME, msg, now)
    reused: list[str] = []
    if previous is not None:
        _again, reused = dag.rerun(previous, selected)
    else:
        try:
            selected = dag.select(spec.selection.mode, spec.selection.steps)
        except PlanError as err:
            return _finish_early(status, generation, Reason.INVALID_SELECTION, "; ".join(err.problems), now)
    status.snapshot = RunSnapshot(
        pipeline=pipeline, selected=selected, reused=reused, workspace_from=workspace_from
    )
    status.steps = {
        n: StepStatus(phase=StepPhase.REUSED, message=f"outputs of run {spec.rerun_of} reused")
        if n in reused
        else StepStatus()
        for n in selected
    }
    return dag


_OBSERVED = (
    "phase",
    "attempts",
    "start_time",
    "completion_time",
    "message",
    "failure",
    "job_name",
    "cached_from",
)
"""The fields of a step's record that its Job and pods determine, in the order ``_observe`` compares them."""
_recorded = attrgetter(*_OBSERVED)


@dataclass
class _Fold:
    """What folding the observed Jobs and pods into the steps gave, beyond their phases."""

    phases: dict[str, StepPhase] = field(default_factory=dict)
    steps: dict[str, StepStatus] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    check: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    patch_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    wake_in: float | None = None
    oldest_pending: str | None = None
    """The creation of the step that has waited longest for its pod, of those still waiting."""
    oldest_unchecked: str | None = None
    """The creation of the oldest waiting step not yet due its first check."""
    waiting: list[str] = field(default_factory=list)
    """Steps still waiting for their pod with a reason known."""

    def wake(self, seconds: float) -> None:
        self.wake_in = seconds if self.wake_in is None else min(self.wake_in, seconds)

    def settle_wake(self, clock: _Clock) -> None:
        """Add the wake-ups for the oldest waiting steps: their pending timeout and their first check."""
        for moment, after in (
            (self.oldest_pending, clock.pending_timeout),
            (self.oldest_unchecked, clock.check_after),
        ):
            began = parse_time(moment)
            if began is not None:
                self.wake((began - clock.now).total_seconds() + after)


@dataclass(frozen=True)
class _Clock:
    """The moments a pass compares each waiting step's start with, as timestamps: a fan-out has hundreds
    of steps waiting at once, and comparing strings of one format is what keeps that check cheap."""

    now: datetime
    pending_timeout: int
    check_after: float
    check_every: float
    check_cutoff: str = ""
    """Steps created at or before this are due their first check."""
    timeout_cutoff: str = ""
    """Steps created at or before this have waited their pending timeout."""

    @classmethod
    def at(cls, now: datetime, pending_timeout: int, check_after: float, check_every: float) -> _Clock:
        return cls(
            now,
            pending_timeout,
            check_after,
            check_every,
            timestamp(now - timedelta(seconds=check_after)),
            timestamp(now - timedelta(seconds=pending_timeout)),
        )


def _duration(start: str | None, end: str | None) -> str:
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return ""
    return f" in {max(0, round((ended - began).total_seconds()))}s"


def _waiting(
    name: str, rec: StepStatus, job: JobView, ran: bool, observed: Observed, clock: _Clock, fold: _Fold
) -> StepStatus:
    """A running step's record while its pod may not run yet: the cause the last check found (a
    Warning once per cause), failure at once for a cause that never clears or after the pending timeout,
    else when to check it next. Once its pod has run (``ran``), the moment that was first seen."""
    if ran:
        if rec.running_since is not None:
            return rec
        return rec.model_copy(update={"running_since": timestamp(clock.now), "reason": None, "message": None})
    cause = observed.causes.get(name)
    if cause is not None and (rec.reason, rec.message) != (cause.reason, cause.message):
        if family(cause.reason) != family(rec.reason) and not cause.permanent:
            fold.events.append(Event("Warning", "StepWaiting", f"step {name} cannot start: {cause.text()}"))
        rec = rec.model_copy(update={"reason": cause.reason, "message": cause.message})
    created = rec.start_time or timestamp(clock.now)
    if cause is not None and cause.permanent:
        failed = f"cannot start: {cause.text()}"
    elif created <= clock.timeout_cutoff:
        last = f": {rec.reason}: {rec.message}" if rec.reason else ""
        failed = f"did not start running within {clock.pending_timeout}s{last}"
    else:
        if rec.reason:
            fold.waiting.append(name)
        fold.oldest_pending = min(created, fold.oldest_pending or created)
        checked = observed.checked.get(name)
        if checked is None and created <= clock.check_cutoff:
            fold.check[name] = (job.name, job.uid)
        elif checked is None:
            fold.oldest_unchecked = min(created, fold.oldest_unchecked or created)
        elif (due := checked + timedelta(seconds=clock.check_every)) <= clock.now:
            fold.check[name] = (job.name, job.uid)
        else:
            fold.wake((due - clock.now).total_seconds())
        return rec
    fold.delete.append(job.name)
    fold.events.append(Event("Warning", "StepFailed", f"step {name} {failed}"))
    return rec.model_copy(
        update={
            "phase": StepPhase.FAILED,
            "reason": rec.reason or PENDING_TIMEOUT,
            "message": failed,
            "completion_time": timestamp(clock.now),
        }
    )


def own_jobs(jobs: Mapping[str, JobView], run_uid: str | None) -> dict[str, JobView]:
    """The Jobs that count for a run: owned by this very run (by uid) and not being deleted."""
    return {s: j for s, j in jobs.items() if j.owner_uid == run_uid and not j.deleting}


def lost_steps(status: PipelineRunStatus, observed: Observed, run_uid: str | None) -> set[str]:
    """The steps recorded as running whose Job is gone (neither indexed as the run's nor in flight).

    A pass that finds one fails the step and may start the next, so the controller first reads the run
    itself: the Jobs of a run deleted in the foreground go before the run's own deletion reaches the
    watch, and a run being deleted must start nothing."""
    jobs = own_jobs(observed.jobs, run_uid)
    return {
        name
        for name, rec in status.steps.items()
        if rec.phase is StepPhase.RUNNING and name not in jobs and rec.job_name not in observed.in_flight
    }


def _observe(
    status: PipelineRunStatus,
    observed: Observed,
    run_uid: str | None,
    clock: _Clock,
    *,
    run_name: str,
    stopping: bool,
    step_events: bool,
) -> _Fold:
    """Fold the Jobs and pods into step phases. A phase already recorded as finished is final.

    Only Jobs owned by this very run count (by uid): a run deleted and recreated under the same name
    must not inherit the old run's Jobs while the garbage collector is still removing them. When the run
    is ``stopping`` (cancel or deadline), a missing Job is one this operator already deleted. A step
    whose Job is in flight runs, whatever the status says: the status may be older than the pass that
    created the Job (a watch event that came in while that pass wrote), and the step must not get a
    second create.
    """
    jobs = own_jobs(observed.jobs, run_uid)
    pods_by_step: dict[str, list[PodView]] = {}
    for pod in observed.pods:
        pods_by_step.setdefault(pod.step, []).append(pod)
    fold = _Fold()
    assert status.snapshot is not None
    for name in status.snapshot.selected:
        rec = status.steps.get(name) or StepStatus()
        if rec.phase.finished:
            fold.phases[name] = rec.phase
            fold.steps[name] = rec
            continue
        seen = observe_step(jobs.get(name), pods_by_step.get(name, ()))
        if name in observed.blocked and seen is None:
            new = rec.model_copy(update={"phase": StepPhase.PENDING, "message": observed.blocked[name]})
        elif name in observed.rejected and seen is None:
            message = f"the API server refused its Job: {observed.rejected[name]}"
            new = rec.model_copy(update={"phase": StepPhase.FAILED, "message": message})
            fold.events.append(Event("Warning", "StepFailed", f"step {name}: {message}"))
        elif seen is not None:
            job = jobs[name]
            fields = (
                seen.phase,
                seen.attempts,
                rec.start_time or seen.start_time,
                seen.completion_time,
                # A running step's message is the cause that keeps its pod from running, if any.
                seen.message if seen.phase is not StepPhase.RUNNING else rec.message,
                seen.failure,
                job.name,
                seen.cached_from,
            )
            # Most running steps did not change since the last pass: keep their record as it is.
            new = (
                rec
                if _recorded(rec) == fields
                else rec.model_copy(update=dict(zip(_OBSERVED, fields, strict=True)))
            )
            if seen.phase is not StepPhase.RUNNING and new.reason is not None:
                new = new.model_copy(update={"reason": None})  # it ran after all
            if seen.phase is StepPhase.RUNNING:
                new = _waiting(name, new, job, seen.ran, observed, clock, fold)
                started_running = new.running_since is not None and rec.running_since is None
                timeout = status.snapshot.pipeline.step(name).timeout_seconds if started_running else None
                if timeout is not None:
                    began = parse_time(job.start_time) or parse_time(new.start_time) or clock.now
                    elapsed = math.ceil(max(0.0, (clock.now - began).total_seconds()))
                    fold.patch_jobs[job.name] = {"spec": {"activeDeadlineSeconds": elapsed + timeout}}
            elif seen.phase is StepPhase.FAILED:
                fold.events.append(Event("Warning", "StepFailed", f"step {name} failed: {seen.message}"))
            elif step_events:
                took = _duration(new.start_time, new.completion_time)
                fold.events.append(Event("Normal", "StepSucceeded", f"step {name} succeeded{took}"))
        elif (
            observed.in_flight
            and rec.phase is not StepPhase.RUNNING
            and (in_flight := naming.job_name(run_name, name)) in observed.in_flight
        ):
            new = rec.model_copy(
                update={
                    "phase": StepPhase.RUNNING,
                    "job_name": in_flight,
                    "start_time": rec.start_time or timestamp(clock.now),
                    "attempts": 1,
                }
            )
        elif rec.phase is StepPhase.RUNNING and rec.job_name not in observed.in_flight and not stopping:
            # Recorded as started, but its Job is gone (deleted by hand): never start a step twice.
            new = rec.model_copy(
                update={"phase": StepPhase.FAILED, "message": f"Job {rec.job_name} disappeared"}
            )
            fold.events.append(Event("Warning", "StepFailed", f"step {name}: Job {rec.job_name} disappeared"))
        else:
            new = rec
        fold.phases[name] = new.phase
        fold.steps[name] = new
    fold.settle_wake(clock)
    return fold


def _plan_first(
    inputs: Inputs, spec: PipelineRunSpec, status: PipelineRunStatus, *, stopping: bool
) -> Actions | None:
    """The run's planning pod (``cache.runplan``): create it before any step starts, wait for its answer,
    mark the steps it found in the cache ``Cached``. ``Actions`` while the steps must wait for it; None
    once they may start (planned, or the planning failed and each step asks the cache in its own pod)."""
    assert status.snapshot is not None
    plan = status.cache_plan
    # An isolated run works in a copy: the index and the outputs it checks are in the pipeline's directory.
    if stopping or spec.workspace is Workspace.ISOLATED:
        return None
    if plan is None:
        pending = [n for n in status.snapshot.selected if status.steps[n].phase is StepPhase.PENDING]
        if not wants_plan(status.snapshot.pipeline, pending, spec.cache):
            return None
        manifest = plan_job(
            run=inputs.run,
            spec=status.snapshot.pipeline,
            request=spec,
            options=inputs.options,
            selected=status.snapshot.selected,
        )
        if manifest is None:
            status.cache_plan = CachePlan(
                phase=StepPhase.FAILED, message="too large to plan in one pod: each step asks in its own"
            )
            return None
        status.cache_plan = CachePlan(job_name=manifest["metadata"]["name"], message="started")
        return Actions(status={}, create=[manifest])
    if plan.phase is not StepPhase.RUNNING:
        return None
    observed = inputs.observed
    job = observed.jobs.get(PLAN_STEP)
    if job is not None and (job.owner_uid != inputs.run["metadata"].get("uid") or job.deleting):
        job = None
    pods = [p for p in observed.pods if p.step == PLAN_STEP]
    seen = observe_step(job, pods)
    if seen is None and plan.job_name in observed.in_flight:
        return Actions(status={})
    if seen is not None and seen.phase is StepPhase.RUNNING:
        return Actions(status={})
    answer = None
    if seen is not None and seen.phase is StepPhase.SUCCEEDED:
        done = next((p for p in pods if p.phase == "Succeeded" and p.job == plan.job_name), None)
        answer = decode(done.termination_message if done else None, status.snapshot.selected)
    if answer is None:
        why = (
            observed.rejected.get(PLAN_STEP)
            or (seen.message if seen is not None else None)
            or ("its answer was not seen" if seen is not None else f"Job {plan.job_name} disappeared")
        )
        status.cache_plan = plan.model_copy(
            update={"phase": StepPhase.FAILED, "message": f"{why}; each step asks the cache in its own pod"}
        )
        return None
    steps = dict(status.steps)
    for name, earlier in answer.items():
        if steps[name].phase is StepPhase.PENDING:
            steps[name] = steps[name].model_copy(
                update={
                    "phase": StepPhase.CACHED,
                    "cached_from": earlier,
                    "message": f"same inputs as in run {earlier}",
                    "start_time": seen.start_time if seen else None,
                    "completion_time": seen.completion_time if seen else None,
                }
            )
    status.steps = steps
    found = f"{len(answer)} of {len(status.snapshot.selected)} step(s) found in the cache"
    status.cache_plan = plan.model_copy(update={"phase": StepPhase.SUCCEEDED, "message": found})
    return None


def _workspace(
    inputs: Inputs,
    spec: PipelineRunSpec,
    status: PipelineRunStatus,
    events: list[Event],
    dag: Dag,
    now: str,
    *,
    stopping: bool,
) -> Actions | None:
    """An isolated run's workspace Job: ``Actions`` while it is being made (or when making it failed),
    ``None`` once it is there (or the run is stopping and its steps are settled as usual)."""
    copy = status.workspace or StepStatus()
    if copy.phase.finished:
        return None
    run = inputs.run
    observed = inputs.observed
    job = observed.jobs.get(WORKSPACE_STEP)
    if job is not None and (job.owner_uid != run["metadata"].get("uid") or job.deleting):
        job = None
    seen = observe_step(job, [p for p in observed.pods if p.step == WORKSPACE_STEP])
    actions = Actions(status={}, events=events, dag=dag)
    if stopping:  # the caller deletes its Job
        status.workspace = copy.model_copy(update={"phase": StepPhase.CANCELLED, "completion_time": now})
        return None
    assert status.snapshot is not None
    if seen is not None and seen.phase is StepPhase.SUCCEEDED:
        status.workspace = copy.model_copy(
            update={"phase": StepPhase.SUCCEEDED, "completion_time": seen.completion_time or now}
        )
        return None
    failure = (
        seen.message
        if seen is not None and seen.phase is StepPhase.FAILED
        else f"the API server refused its Job: {observed.rejected[WORKSPACE_STEP]}"
        if seen is None and WORKSPACE_STEP in observed.rejected
        else None
    )
    if failure is not None:
        message = f"the run's workspace could not be made: {failure}"
        status.workspace = copy.model_copy(
            update={"phase": StepPhase.FAILED, "message": failure, "completion_time": now}
        )
        status.steps = {
            n: s.model_copy(update={"phase": StepPhase.SKIPPED, "message": "not run: no workspace"})
            for n, s in status.steps.items()
        }
        status.progress = progress({n: s.phase for n, s in status.steps.items()})
        _set_condition(status, RunPhase.FAILED, Reason.WORKSPACE_FAILED, message, now)
        actions.events.append(Event("Warning", Reason.WORKSPACE_FAILED, message))
        actions.status = status.wire()
        return actions
    if seen is None and copy.job_name not in observed.in_flight:
        # Not made yet, or its Job went away: the copy starts over from scratch, so making it again is safe.
        manifest = workspace_job(
            run=run,
            spec=status.snapshot.pipeline,
            exclude=spec.workspace_exclude,
            from_run=status.snapshot.workspace_from,
            priority=spec.priority,
            options=inputs.options,
            deadline_seconds=(
                spec.pending_timeout_seconds
                or status.snapshot.pipeline.pending_timeout_seconds
                or DEFAULT_PENDING_TIMEOUT
            )
            + WORKSPACE_COPY_SECONDS,
        )
        actions.create.append(manifest)
        copy = StepStatus(
            phase=StepPhase.RUNNING,
            job_name=manifest["metadata"]["name"],
            start_time=copy.start_time or now,
            attempts=1,
            message=observed.blocked.get(WORKSPACE_STEP),
        )
    status.workspace = copy
    status.progress = progress({n: s.phase for n, s in status.steps.items()})
    _set_condition(status, RunPhase.RUNNING, Reason.RUNNING, "copying the pipeline's directory", now)
    actions.status = status.wire()
    return actions


def reconcile(inputs: Inputs) -> Actions:
    run = inputs.run
    now = timestamp(inputs.now)
    base = inputs.status if inputs.status is not None else current_status(run)
    # A shallow copy: every change below assigns a field, so ``base`` stays as it was.
    status = base.model_copy()
    generation = run["metadata"].get("generation")
    if status.phase.finished:
        status.observed_generation = generation
        return Actions(status=status.wire())
    try:
        spec = PipelineRunSpec.model_validate(run.get("spec") or {})
    except ValidationError as err:
        return _finish_early(status, generation, "InvalidRun", _spec_problems(err, PipelineRunSpec), now)

    events: list[Event] = []
    if status.snapshot is None:
        initialised = _initialise(inputs, spec, status, now)
        if isinstance(initialised, Actions):
            return initialised
        inputs = replace(inputs, dag=initialised)
    assert status.snapshot is not None
    status.observed_generation = generation

    if status.start_time is None:
        if spec.cancel:
            status.steps = {
                n: s if s.phase.finished else s.model_copy(update={"phase": StepPhase.CANCELLED})
                for n, s in status.steps.items()
            }
            _set_condition(status, RunPhase.CANCELLED, Reason.CANCELLED, "cancelled before it started", now)
            status.progress = progress({n: s.phase for n, s in status.steps.items()})
            return Actions(status=status.wire(), events=[Event("Normal", Reason.CANCELLED, "run cancelled")])
        if inputs.forbidden_by is not None:
            msg = (
                "the pipeline allows one run at a time (concurrencyPolicy: Forbid) "
                f"and run {inputs.forbidden_by} is active"
            )
            return _finish_early(status, generation, Reason.CONCURRENCY_FORBIDDEN, msg, now)
        if inputs.waiting_for is not None:
            _set_condition(
                status, RunPhase.QUEUED, Reason.QUEUED, f"waiting for run {inputs.waiting_for}", now
            )
            status.progress = progress({n: s.phase for n, s in status.steps.items()})
            return Actions(status=status.wire())
        status.start_time = now
        events.append(Event("Normal", "Started", f"running {len(status.snapshot.selected)} step(s)"))

    dag = inputs.dag or Dag.of(status.snapshot.pipeline)
    started = parse_time(status.start_time)
    overdue = (
        spec.timeout_seconds is not None
        and started is not None
        and (inputs.now - started).total_seconds() >= spec.timeout_seconds
    )
    copying = status.workspace is not None and not status.workspace.phase.finished
    if spec.workspace is Workspace.ISOLATED:
        waiting = _workspace(inputs, spec, status, events, dag, now, stopping=spec.cancel or overdue)
        if waiting is not None:
            return waiting
    stop_planning: list[str] = []
    plan = status.cache_plan
    if (spec.cancel or overdue) and plan is not None and plan.phase is StepPhase.RUNNING:
        status.cache_plan = plan.model_copy(update={"phase": StepPhase.FAILED, "message": "the run stopped"})
        stop_planning = [plan.job_name] if plan.job_name else []
    planning = _plan_first(inputs, spec, status, stopping=spec.cancel or overdue)
    if planning is not None:
        _set_condition(status, RunPhase.RUNNING, Reason.RUNNING, "looking the steps up in the cache", now)
        status.progress = progress({n: s.phase for n, s in status.steps.items()})
        planning.events[:0] = events
        planning.status = _wire(status, base, run.get("status") or {})
        planning.model, planning.dag = status, dag
        return planning
    pending_timeout = (
        spec.pending_timeout_seconds
        or status.snapshot.pipeline.pending_timeout_seconds
        or DEFAULT_PENDING_TIMEOUT
    )
    clock = _Clock.at(inputs.now, pending_timeout, inputs.check_after, inputs.check_every)
    total = len(status.snapshot.selected)
    step_events = total <= inputs.step_events_limit
    fold = _observe(
        status,
        inputs.observed,
        run["metadata"].get("uid"),
        clock,
        run_name=run["metadata"]["name"],
        stopping=spec.cancel or overdue,
        step_events=step_events,
    )
    phases, steps = fold.phases, fold.steps
    events += fold.events
    decision: Decision = decide(
        dag,
        status.snapshot.selected,
        phases,
        parallelism=spec.parallelism,
        failure_policy=spec.failure_policy,
        cancel=spec.cancel,
        timeout_seconds=spec.timeout_seconds,
        started=started,
        now=inputs.now,
    )
    actions = Actions(status={}, events=events, dag=dag, delete=fold.delete, patch_jobs=fold.patch_jobs)
    stopped = status.workspace is not None and status.workspace.phase is StepPhase.CANCELLED
    if copying and stopped and status.workspace is not None and status.workspace.job_name:
        actions.delete.append(status.workspace.job_name)  # stopped while it was being copied
    if not decision.finished and not spec.cancel:
        actions.check, actions.wake_in = fold.check, fold.wake_in
    for name, phase in decision.phases.items():
        if phase is not steps[name].phase:
            note = {
                StepPhase.SKIPPED: "not run: an upstream step failed or the run stopped early",
                StepPhase.CANCELLED: "cancelled",
                StepPhase.FAILED: f"stopped: {decision.message}",
            }.get(phase)
            steps[name] = steps[name].model_copy(
                update={"phase": phase, "message": note, "completion_time": now if phase.finished else None}
            )
    actions.delete += stop_planning
    for name in decision.stop:
        if steps[name].job_name and steps[name].job_name not in actions.delete:
            actions.delete.append(steps[name].job_name)
    for name in decision.start:
        manifest = step_job(
            run=run,
            spec=status.snapshot.pipeline,
            step_name=name,
            parameters=spec.parameters,
            priority=spec.priority,
            options=inputs.options,
            use_cache=spec.cache,
            isolated=spec.workspace is Workspace.ISOLATED,
            pending_timeout_seconds=pending_timeout,
        )
        actions.create.append(manifest)
        retried = name in inputs.observed.blocked
        steps[name] = StepStatus(
            phase=StepPhase.RUNNING,
            job_name=manifest["metadata"]["name"],
            start_time=steps[name].start_time if retried else now,
            attempts=1,
            message=inputs.observed.blocked.get(name),
        )
        if step_events and not retried:
            job = manifest["metadata"]["name"]
            actions.events.append(Event("Normal", "StepStarted", f"step {name} started: Job {job}"))
    if decision.start:  # the steps started now are checked when they have waited that long
        fold.wake(inputs.check_after)
        actions.wake_in = fold.wake_in
    status.steps = steps
    status.progress = progress({n: s.phase for n, s in steps.items()})
    if not step_events:
        actions.events += _milestones(base.progress, status.progress)
    _set_condition(status, decision.phase, decision.reason, _with_waiting(decision, steps, fold.waiting), now)
    if decision.finished:
        kind = "Normal" if decision.phase is RunPhase.SUCCEEDED else "Warning"
        actions.events.append(Event(kind, decision.reason, decision.message))
    actions.status = _wire(status, base, run.get("status") or {})
    actions.model = status
    return actions


def _milestones(before: str | None, after: str | None) -> list[Event]:
    """A large run's Events stand for its steps': one at each quarter of its steps done, so that
    ``kubectl describe`` still shows how far it got (the run's end has its own Event). ``before`` and
    ``after`` are the run's ``progress`` ("done/total") before and after this pass."""

    def quarter(progress: str | None) -> tuple[int, int, int]:
        done, _, total = (progress or "0/0").partition("/")
        return 4 * int(done) // max(int(total or 0), 1), int(done), int(total or 0)

    (was, _, _), (now, done, total) = quarter(before), quarter(after)
    if now > was and done < total:
        return [Event("Normal", "Progress", f"{done}/{total} steps done")]
    return []


def _with_waiting(
    decision: Decision, steps: Mapping[str, StepStatus], candidates: Collection[str], shown: int = 3
) -> str:
    """The condition's message, naming the steps whose pods do not run and why: the printer columns and
    ``kubectl get`` show this message, and a stuck run must say it is stuck right there. ``candidates``
    are the steps this pass saw waiting with a reason."""
    if decision.finished or not candidates:
        return decision.message
    waiting = [
        f"{n} ({steps[n].reason})"
        for n in candidates
        if steps[n].phase is StepPhase.RUNNING and steps[n].reason and steps[n].running_since is None
    ]
    if not waiting:
        return decision.message
    more = f" and {len(waiting) - shown} more" if len(waiting) > shown else ""
    return f"{decision.message}; cannot start: {', '.join(waiting[:shown])}{more}"


def _wire(status: PipelineRunStatus, base: PipelineRunStatus, stored: Mapping[str, Any]) -> dict[str, Any]:
    """``status.wire()``, reusing the stored dicts of what is still the same object as in ``base`` (the
    model of ``stored``): the snapshot, which never changes, and the steps no pass touched. Dumping a
    1000-step run's 200 KB status every pass was a third of the operator's time in a large fan-out."""
    data = status.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"steps", "snapshot"})
    stored_steps = stored.get("steps") or {}
    data["steps"] = {
        name: stored_steps[name] if step is base.steps.get(name) and name in stored_steps else step.wire()
        for name, step in status.steps.items()
    }
    if status.snapshot is not None:
        same = status.snapshot is base.snapshot and "snapshot" in stored
        data["snapshot"] = stored["snapshot"] if same else status.snapshot.wire()
    return data
