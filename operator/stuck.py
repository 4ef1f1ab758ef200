"""Why a step's pod does not run: the cluster's own reason, read from a pending pod or its Job's events.

The operator watches pods only once they have finished (``watching.py``), so a pod that never runs is
invisible to it. Instead, a step whose Job has not shown a running pod a few seconds after it was created
is *checked*: one list of the run's unfinished pods and, when a step has no pod at all, one list of the
namespace's ``FailedCreate`` events of Jobs. Healthy steps are never checked (a fast step is done before
its first check; a long one shows ``status.ready`` on its Job, which the Job watch already brings), so
the common path costs nothing. The choice and its cost are in ``bench/README.md``.

Pure: the controller does the two reads and hands the objects here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchest_operator import naming

UNSCHEDULABLE = "Unschedulable"
FAILED_CREATE = "FailedCreate"
PENDING_TIMEOUT = "PendingTimeout"
WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Container waiting reasons that mean the container cannot start (``ContainerCreating`` is normal)."""
NEVER_CLEARS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Causes no retry can clear: the image reference is malformed, or the pull policy forbids pulling."""
_FAMILY = {"ErrImagePull": "ImagePull", "ImagePullBackOff": "ImagePull"}
"""The kubelet alternates between these two for one failing pull: they are one cause."""
MISSING_PRIORITY_CLASS = "no PriorityClass with name"
"""The priority admission plugin's words when a pod names a PriorityClass that does not exist."""
PRIORITY_CLASS_HINT = (
    "install the operator's PriorityClasses (they come with `kubectl apply -k manifests` and the chart) or "
    "run the operator with ORCHEST_PRIORITY_CLASSES=false (chart: priorityClasses.enabled=false)"
)


@dataclass(frozen=True)
class Cause:
    """Why one step's pod does not run."""

    reason: str
    message: str
    permanent: bool = False
    """Nothing will clear it by itself: the step fails at once instead of waiting for its pending timeout."""

    @property
    def family(self) -> str:
        """What counts as the same cause for Events: one Warning per family, not one per retry."""
        return family(self.reason)

    def text(self) -> str:
        return f"{self.reason}: {self.message}" if self.message else self.reason


def family(reason: str | None) -> str | None:
    return _FAMILY.get(reason, reason) if reason else None


def pod_cause(pod: Mapping[str, Any]) -> Cause | None:
    """Why a Pending pod does not run: a container that cannot start, else an unschedulable pod."""
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_REASONS:
            message = waiting.get("message") or ""
            return Cause(reason, message, permanent=reason in NEVER_CLEARS)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return Cause(cond.get("reason") or UNSCHEDULABLE, cond.get("message") or "")
    return None


def _event_time(event: Mapping[str, Any]) -> str:
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def job_cause(events: Iterable[Mapping[str, Any]], job: str, uid: str | None) -> Cause | None:
    """Why the Job controller cannot create the Job's pod: its newest ``FailedCreate`` event.

    A pod naming a missing PriorityClass is refused on every retry: the step fails at once, with the
    class's name and how to fix it (the operator does not drop ``priorityClassName`` behind the user's
    back: a run silently losing its priority is worse than one that says why it cannot start).
    """
    mine = [
        e
        for e in events
        if e.get("reason") == FAILED_CREATE
        and (e.get("involvedObject") or {}).get("kind") == "Job"
        and (e.get("involvedObject") or {}).get("name") == job
        and (uid is None or (e.get("involvedObject") or {}).get("uid") in (None, uid))
    ]
    if not mine:
        return None
    message = (max(mine, key=_event_time).get("message") or "").strip()
    if MISSING_PRIORITY_CLASS in message:
        return Cause(FAILED_CREATE, f"{message}; {PRIORITY_CLASS_HINT}", permanent=True)
    return Cause(FAILED_CREATE, message)


def causes(
    steps: Mapping[str, tuple[str, str | None]],
    pods: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> dict[str, Cause]:
    """Each checked step's cause, from the run's unfinished pods and the namespace's ``FailedCreate``
    events.

    ``steps`` maps a step to its Job's name and uid. A step with a pod is judged by its Pending pods (a
    ``FailedCreate`` of an earlier attempt is history then; a Running pod has no cause); a step without
    one by its Job's events. A step with nothing to report is left out: it is merely slow.
    """
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        job = _job_of(pod)
        if job:
            by_job.setdefault(job, []).append(pod)
    events = list(events)
    found: dict[str, Cause] = {}
    for step, (job, uid) in steps.items():
        mine = by_job.get(job, [])
        pending = (p for p in mine if (p.get("status") or {}).get("phase", "Pending") == "Pending")
        cause = (
            next((c for c in map(pod_cause, pending) if c is not None), None)
            if mine
            else job_cause(events, job, uid)
        )
        if cause is not None:
            found[step] = cause
    return found


def needs_events(steps: Mapping[str, tuple[str, str | None]], pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether some checked step has no pod, so only its Job's events can say why."""
    jobs = {_job_of(p) for p in pods}
    return any(job not in jobs for job, _uid in steps.values())


def _job_of(pod: Mapping[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"
"""The pods a check lists: a Running pod shows its step has a pod (no events to read), a Pending one why
it does not run."""


def run_pods_selector(run: str) -> dict[str, str]:
    """The label selector of a run's pods (what the Job template gives every pod)."""
    return {naming.LABEL_RUN: naming.label_value(run)}
