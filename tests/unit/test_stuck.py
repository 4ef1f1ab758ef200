"""Reading why a step's pod does not run from a Pending pod or its Job's FailedCreate events."""

from __future__ import annotations

from typing import Any

import pytest

from orchest_operator.stuck import Cause, causes, family, job_cause, needs_events, pod_cause


def pending_pod(job: str = "r1-a", *, waiting: str | None = None, unschedulable: str | None = None) -> dict:
    status: dict[str, Any] = {"phase": "Pending", "conditions": []}
    if unschedulable is not None:
        status["conditions"].append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    else:
        status["conditions"].append({"type": "PodScheduled", "status": "True"})
    if waiting is not None:
        state = {"waiting": {"reason": waiting, "message": f"{waiting} detail"}}
        status["containerStatuses"] = [{"name": "step", "state": state}]
    meta = {"name": f"{job}-x", "labels": {"batch.kubernetes.io/job-name": job}}
    return {"metadata": meta, "status": status}


def failed_create(job: str, message: str, at: str, uid: str | None = "u1", kind: str = "Job") -> dict:
    return {
        "reason": "FailedCreate",
        "type": "Warning",
        "message": message,
        "lastTimestamp": at,
        "involvedObject": {"kind": kind, "name": job, "uid": uid},
    }


GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (pending_pod(), None),
        (pending_pod(waiting="ContainerCreating"), None),
        (pending_pod(unschedulable=GPU), Cause("Unschedulable", GPU)),
        (pending_pod(waiting="ErrImagePull"), Cause("ErrImagePull", "ErrImagePull detail")),
        (pending_pod(waiting="ImagePullBackOff"), Cause("ImagePullBackOff", "ImagePullBackOff detail")),
        (
            pending_pod(waiting="InvalidImageName"),
            Cause("InvalidImageName", "InvalidImageName detail", permanent=True),
        ),
        (
            pending_pod(waiting="CreateContainerConfigError"),
            Cause("CreateContainerConfigError", "CreateContainerConfigError detail"),
        ),
        ({"metadata": {"name": "bare"}}, None),
    ],
    ids=["scheduled", "creating", "gpu", "pull", "backoff", "invalid-image", "config", "no-status"],
)
def test_a_pending_pod_says_why_it_does_not_run(pod: dict, expected: Cause | None) -> None:
    assert pod_cause(pod) == expected


def test_a_container_that_cannot_start_outranks_scheduling() -> None:
    pod = pending_pod(waiting="ErrImagePull")
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "message": "x"}]
    assert pod_cause(pod).reason == "ErrImagePull"


QUOTA = 'Error creating: pods "r1-a-x" is forbidden: exceeded quota: q, requested: cpu=2, used: cpu=8'
NO_CLASS = (
    'Error creating: pods "r1-a-y" is forbidden: no PriorityClass with name orchest-background was found'
)
NO_SA = 'Error creating: pods "r1-a-z" is forbidden: error looking up service account ns/x: not found'


@pytest.mark.parametrize(
    ("events", "reason", "permanent", "says"),
    [
        ([], None, False, None),
        ([failed_create("r1-a", QUOTA, "2026-01-01T00:00:01Z")], "FailedCreate", False, "exceeded quota"),
        ([failed_create("r1-a", NO_SA, "2026-01-01T00:00:01Z")], "FailedCreate", False, "service account"),
        (
            [failed_create("r1-a", NO_CLASS, "2026-01-01T00:00:01Z")],
            "FailedCreate",
            True,
            "ORCHEST_PRIORITY_CLASSES=false",
        ),
        (
            [
                failed_create("r1-a", QUOTA, "2026-01-01T00:00:09Z"),
                failed_create("r1-a", NO_SA, "2026-01-01T00:00:01Z"),
            ],
            "FailedCreate",
            False,
            "exceeded quota",
        ),
        ([failed_create("r1-b", QUOTA, "2026-01-01T00:00:01Z")], None, False, None),
        ([failed_create("r1-a", QUOTA, "2026-01-01T00:00:01Z", uid="old")], None, False, None),
        ([failed_create("r1-a", QUOTA, "2026-01-01T00:00:01Z", kind="ReplicaSet")], None, False, None),
        ([{**failed_create("r1-a", QUOTA, "x"), "reason": "SuccessfulCreate"}], None, False, None),
    ],
    ids=["none", "quota", "sa", "priority-class", "newest", "other-job", "old-uid", "kind", "ok"],
)
def test_a_job_without_pod_says_why_from_its_failed_create_events(
    events: list[dict], reason: str | None, permanent: bool, says: str | None
) -> None:
    cause = job_cause(events, "r1-a", "u1")
    if reason is None:
        assert cause is None
        return
    assert cause is not None and cause.reason == reason and cause.permanent is permanent
    assert says in cause.message


def test_each_step_is_judged_by_its_pending_pod_else_its_job_events() -> None:
    steps = {"a": ("r1-a", "u1"), "b": ("r1-b", "u2"), "c": ("r1-c", "u3")}
    pods = [pending_pod("r1-a", waiting="ImagePullBackOff"), pending_pod("r1-c")]
    events = [
        failed_create("r1-a", QUOTA, "2026-01-01T00:00:01Z"),
        failed_create("r1-b", QUOTA, "2026-01-01T00:00:01Z", uid="u2"),
    ]
    found = causes(steps, pods, events)
    assert {s: c.reason for s, c in found.items()} == {"a": "ImagePullBackOff", "b": "FailedCreate"}
    assert needs_events(steps, pods)
    assert not needs_events({"a": ("r1-a", "u1")}, pods)


def test_a_running_pod_has_no_cause_and_needs_no_events() -> None:
    running = pending_pod("r1-b", waiting="ErrImagePull")  # a stale waiting state: the pod runs now
    running["status"]["phase"] = "Running"
    steps = {"b": ("r1-b", "u2")}
    events = [failed_create("r1-b", QUOTA, "2026-01-01T00:00:01Z", uid="u2")]
    assert causes(steps, [running], events) == {}
    assert not needs_events(steps, [running])


def test_one_failing_pull_is_one_cause() -> None:
    assert family("ErrImagePull") == family("ImagePullBackOff") != family("Unschedulable")
    assert family(None) is None
