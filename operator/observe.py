"""What a step's Job and pods say about the step.

The indexes keep these small views instead of whole objects (memory grows with every run), and the
reconciler folds them into step phases. A succeeded pod of a one-completion Job already means the step is
done: the Job controller only marks the Job ``Complete`` about a second later, and waiting for that would
add a second to every edge of the DAG. Failure is decided by the Job's terminal ``Failed`` condition,
because only the Job controller knows whether it will retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchest_operator import naming
from orchest_operator.cache.key import read_hit
from orchest_operator.executor import parse_termination_message
from orchest_operator.models import StepFailure, StepPhase

_DETAIL_LIMIT = 500


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in body.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _controller_uid(meta: dict[str, Any]) -> str | None:
    return next((o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")), None)


@dataclass(frozen=True)
class JobView:
    name: str
    step: str
    uid: str | None
    owner_uid: str | None
    """The uid of the run that owns it: a run recreated under the same name must not adopt old Jobs."""
    deleting: bool
    complete: bool
    failed: bool
    message: str | None
    failed_pods: int
    start_time: str | None
    completion_time: str | None
    ready: int = 0
    """Pods of the Job that run (Ready): the Job controller counts them, so the Job watch shows a step's
    pod running without watching running pods."""

    @classmethod
    def of(cls, body: dict[str, Any]) -> JobView:
        status = body.get("status") or {}
        failed = _condition(body, "Failed")
        complete = _condition(body, "Complete")
        message = None
        if failed is not None:
            message = ": ".join(p for p in (failed.get("reason"), failed.get("message")) if p)
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            step=meta.get("labels", {}).get(naming.LABEL_STEP, ""),
            uid=meta.get("uid"),
            owner_uid=_controller_uid(meta),
            deleting=bool(meta.get("deletionTimestamp")),
            complete=complete is not None,
            failed=failed is not None,
            message=message,
            failed_pods=int(status.get("failed") or 0),
            start_time=status.get("startTime"),
            completion_time=status.get("completionTime")
            or (failed or {}).get("lastTransitionTime")
            or (complete or {}).get("lastTransitionTime"),
            ready=int(status.get("ready") or 0),
        )


@dataclass(frozen=True)
class PodView:
    name: str
    job: str
    job_uid: str | None
    step: str
    phase: str
    termination_message: str | None
    finished_at: str | None
    created: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> PodView:
        meta = body["metadata"]
        labels = meta.get("labels", {})
        status = body.get("status") or {}
        message = finished = None
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                message = terminated.get("message") or message
                finished = terminated.get("finishedAt") or finished
        return cls(
            name=meta["name"],
            job=labels.get("job-name") or labels.get("batch.kubernetes.io/job-name", ""),
            job_uid=labels.get("batch.kubernetes.io/controller-uid") or labels.get("controller-uid"),
            step=labels.get(naming.LABEL_STEP, ""),
            phase=status.get("phase", "Pending"),
            termination_message=message,
            finished_at=finished,
            created=meta.get("creationTimestamp"),
        )


@dataclass(frozen=True)
class StepObservation:
    phase: StepPhase
    attempts: int
    start_time: str | None = None
    completion_time: str | None = None
    message: str | None = None
    failure: StepFailure | None = None
    cached_from: str | None = None
    """The run whose execution the step's pod found in the cache (its phase is then ``Cached``)."""
    ran: bool = False
    """A pod of the step has run (it is Ready now, or one has finished): the step is past Pending."""


def observe_step(job: JobView | None, pods: Iterable[PodView]) -> StepObservation | None:
    """The step's phase as its Job and pods show it, or ``None`` when there is no Job to look at."""
    if job is None:
        return None
    mine = sorted(
        (p for p in pods if p.job == job.name and (p.job_uid is None or p.job_uid == job.uid)),
        key=lambda p: p.created or "",
    )
    attempts = max(len(mine), job.failed_pods + (0 if job.failed else 1))
    succeeded = next((p for p in mine if p.phase == "Succeeded"), None)
    if job.complete or succeeded is not None:
        done = job.completion_time or (succeeded.finished_at if succeeded else None)
        hit = read_hit(succeeded.termination_message) if succeeded else None
        if hit is not None:
            return StepObservation(
                StepPhase.CACHED, attempts, job.start_time, done, message=hit[1], cached_from=hit[0]
            )
        return StepObservation(StepPhase.SUCCEEDED, attempts, job.start_time, done)
    if job.failed:
        last_failed = next((p for p in reversed(mine) if p.phase == "Failed"), None)
        failure, detail = parse_termination_message(
            last_failed.termination_message if last_failed and last_failed.termination_message else ""
        )
        # With FallbackToLogsOnError a crash leaves the log tail here: keep its end, where the error is.
        message = "; ".join(m for m in (job.message, detail[-_DETAIL_LIMIT:]) if m) or "the step's Job failed"
        return StepObservation(
            StepPhase.FAILED, attempts, job.start_time, job.completion_time, message=message, failure=failure
        )
    ran = job.ready > 0 or job.failed_pods > 0 or bool(mine)
    return StepObservation(StepPhase.RUNNING, attempts, job.start_time, ran=ran)
