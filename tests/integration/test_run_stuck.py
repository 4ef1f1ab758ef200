"""Steps whose pods cannot run, against the real operator: the fake Job controller and kubelet say no the way
a cluster does (FailedCreate events, an unschedulable pod, an image that cannot be pulled), and the run says
why in its status and Events instead of hanging. Also: a 5-step run's Events read as a timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from orchest_operator import naming
from tests.support.cluster import Cluster
from tests.support.kubelet import CannotStart, Obstacle, Refused, Unschedulable
from tests.support.waiting import wait_for

OPERATOR = "orchest_operator.handlers"
NS = "team"
RUNS = "orchest.io/v1alpha1/pipelineruns"
NO_CLASS = (
    'Error creating: pods "{job}-x" is forbidden: no PriorityClass with name orchest-background was found'
)
QUOTA = (
    'Error creating: pods "{job}-x" is forbidden: exceeded quota: compute, requested: cpu=4, limited: cpu=2'
)


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")
    monkeypatch.setenv("ORCHEST_STUCK_CHECK_AFTER_SECONDS", "0.3")
    monkeypatch.setenv("ORCHEST_STUCK_CHECK_EVERY_SECONDS", "0.3")


def chain(n: int) -> list[dict[str, Any]]:
    return [{"name": f"s{i}", "file": "x.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(n)]


async def start(cluster: Cluster, steps: list[dict[str, Any]], **spec: Any) -> None:
    pipeline = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p", "namespace": NS},
        "spec": {"volume": {"claimName": "data"}, "steps": steps},
    }
    run = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "r1", "namespace": NS},
        "spec": {"pipelineRef": {"name": "p"}, **spec},
    }
    await cluster.api.create("orchest.io/v1alpha1/pipelines", pipeline)
    await cluster.api.create(RUNS, run)


def status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.peek(RUNS, "r1", NS) or {}).get("status") or {}


def step(cluster: Cluster, name: str = "s0") -> dict[str, Any]:
    return status(cluster).get("steps", {}).get(name) or {}


def run_events(cluster: Cluster) -> list[dict[str, Any]]:
    """The run's Events in the order they were posted (what ``kubectl describe`` lists)."""
    events = [
        e for e in cluster.peek_all("v1/events", NS) if e["involvedObject"].get("kind") == "PipelineRun"
    ]
    return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))


def warnings(cluster: Cluster) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in run_events(cluster) if e["type"] == "Warning"]


def obstacle_for(step_name: str, obstacle: Obstacle) -> Any:
    def policy(job: Mapping[str, Any]) -> Obstacle | None:
        if job["metadata"]["labels"][naming.LABEL_STEP] != step_name:
            return None
        if isinstance(obstacle, Refused):
            return Refused(obstacle.message.format(job=job["metadata"]["name"]), obstacle.retry_every)
        return obstacle

    return policy


def finished(cluster: Cluster) -> str | None:
    phase = status(cluster).get("phase")
    return phase if phase in ("Succeeded", "Failed", "Cancelled") else None


def job_exists(cluster: Cluster, step_name: str = "s0") -> bool:
    return cluster.peek("batch/v1/jobs", naming.job_name("r1", step_name), NS) is not None


async def test_a_missing_priority_class_fails_the_step_at_once_naming_the_class(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, obstacle=obstacle_for("s0", Refused(NO_CLASS)))
    await start(cluster, chain(2))
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    s0 = step(cluster)
    assert s0["phase"] == "Failed" and s0["reason"] == "FailedCreate"
    assert "no PriorityClass with name orchest-background" in s0["message"]
    assert "ORCHEST_PRIORITY_CLASSES=false" in s0["message"]
    assert step(cluster, "s1")["phase"] == "Skipped"
    await wait_for(lambda: not job_exists(cluster), timeout=5)
    await wait_for(lambda: ("Failed", "step(s) failed: s0") in warnings(cluster), timeout=5)
    assert [r for r, _m in warnings(cluster)] == ["StepFailed", "Failed"]


async def test_a_refused_pod_waits_with_its_reason_then_fails_at_the_pending_timeout(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, obstacle=obstacle_for("s0", Refused(QUOTA, retry_every=0.2)))
    await start(cluster, chain(1), pendingTimeoutSeconds=4)
    await wait_for(lambda: step(cluster).get("reason") == "FailedCreate", timeout=4)
    s0 = step(cluster)
    assert s0["phase"] == "Running" and "exceeded quota" in s0["message"]
    assert "cannot start: s0 (FailedCreate)" in status(cluster)["conditions"][0]["message"]
    assert await wait_for(lambda: step(cluster).get("phase") == "Failed", timeout=8)
    s0 = step(cluster)
    assert s0["reason"] == "FailedCreate"
    assert (
        s0["message"].startswith("did not start running within 4s: FailedCreate: ")
        and "exceeded quota" in s0["message"]
    )
    await wait_for(lambda: not job_exists(cluster), timeout=5)
    await wait_for(lambda: len(warnings(cluster)) == 3, timeout=5)
    reasons = [r for r, _m in warnings(cluster)]
    assert reasons == ["StepWaiting", "StepFailed", "Failed"], "one Warning for the cause, not one per retry"


@pytest.mark.parametrize(
    ("obstacle", "reason", "says"),
    [
        (Unschedulable(), "Unschedulable", "3 Insufficient nvidia.com/gpu"),
        (CannotStart("ErrImagePull", 'pull access denied for "typo"', retry_every=0.2), None, "typo"),
        (
            CannotStart("CreateContainerConfigError", 'secret "creds" not found'),
            "CreateContainerConfigError",
            'secret "creds" not found',
        ),
    ],
    ids=["unschedulable", "image-pull", "missing-secret"],
)
async def test_a_pod_that_cannot_run_says_why_and_runs_when_the_cause_clears(
    cluster: Cluster, operator, fake_kubelet, obstacle: Obstacle, reason: str | None, says: str
) -> None:
    await operator(OPERATOR)
    kubelet = await fake_kubelet(job_complete_delay=0.05, obstacle=obstacle_for("s0", obstacle))
    await start(cluster, chain(2))
    await wait_for(lambda: says in (step(cluster).get("message") or ""), timeout=5)
    s0 = step(cluster)
    assert s0["phase"] == "Running"
    assert s0["reason"] == reason if reason else s0["reason"] in ("ErrImagePull", "ImagePullBackOff")
    if reason is None:  # the kubelet alternates: wait until both reasons were seen
        await wait_for(lambda: step(cluster).get("reason") != s0["reason"], timeout=5)
    await wait_for(lambda: warnings(cluster), timeout=5)
    [(kind, message)] = warnings(cluster)
    assert kind == "StepWaiting" and message.startswith("step s0 cannot start: ") and says in message
    # The cause clears (a node with a GPU joins, the registry lets the pull through, the Secret appears):
    # a fresh kubelet stands in for the retry that now works.
    await kubelet.stop()
    await fake_kubelet(job_complete_delay=0.05)
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Succeeded"
    s0 = step(cluster)
    assert "reason" not in s0 and "message" not in s0, "a cause that cleared is not left behind"
    assert [r for r, _m in warnings(cluster)] == ["StepWaiting"]


async def test_an_image_name_that_cannot_be_parsed_fails_at_once(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    bad = CannotStart(
        "InvalidImageName", 'Failed to apply default image tag "Runner:Test": invalid reference'
    )
    await fake_kubelet(job_complete_delay=0.05, obstacle=obstacle_for("s0", bad))
    await start(cluster, chain(1))
    assert await wait_for(lambda: step(cluster).get("phase") == "Failed", timeout=5)
    s0 = step(cluster)
    assert s0["reason"] == "InvalidImageName" and "invalid reference" in s0["message"]
    assert await wait_for(lambda: finished(cluster), timeout=5) == "Failed"


async def test_time_spent_pending_does_not_count_toward_the_step_timeout(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    """The step waits for quota, then runs 1.5 s of its 2 s timeout: its Job's deadline is the timeout
    plus the pending timeout until the pod runs, then the time waited plus the timeout."""
    await operator(OPERATOR)
    kubelet = await fake_kubelet(
        job_complete_delay=0.5, run_time=1.5, obstacle=obstacle_for("s0", Refused(QUOTA))
    )
    await start(cluster, [{"name": "s0", "file": "x.py", "timeoutSeconds": 2}], pendingTimeoutSeconds=30)
    await wait_for(lambda: step(cluster).get("reason") == "FailedCreate", timeout=5)
    job = cluster.peek("batch/v1/jobs", naming.job_name("r1", "s0"), NS)
    assert job["spec"]["activeDeadlineSeconds"] == 32, "timeout plus pending timeout until the pod runs"
    # The quota frees up: the fake Job controller's next retry creates the pod (a new Job run stands in).
    kubelet.obstacle = lambda job: None
    await kubelet.stop()
    await fake_kubelet(job_complete_delay=0.5, run_time=1.5)
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Succeeded"
    assert step(cluster).get("runningSince")
    job = cluster.peek("batch/v1/jobs", naming.job_name("r1", "s0"), NS)
    assert 2 < job["spec"]["activeDeadlineSeconds"] < 10


async def test_a_five_step_run_reads_as_a_timeline(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    await start(cluster, chain(5))
    await wait_for(lambda: status(cluster).get("phase") == "Succeeded", timeout=15)
    await wait_for(
        lambda: run_events(cluster) and run_events(cluster)[-1]["reason"] == "Succeeded", timeout=5
    )
    timeline = [(e["type"], e["reason"], e["message"]) for e in run_events(cluster)]
    expected = [("Normal", "Started", "running 5 step(s)")]
    for i in range(5):
        expected.append(("Normal", "StepStarted", f"step s{i} started: Job {naming.job_name('r1', f's{i}')}"))
        expected.append(("Normal", "StepSucceeded", None))
    expected.append(("Normal", "Succeeded", "all 5 steps succeeded"))
    assert [(t, r) for t, r, _m in timeline] == [(t, r) for t, r, _m in expected]
    for (_t, reason, message), (_et, _er, want) in zip(timeline, expected, strict=True):
        if want is not None:
            assert message == want
        elif reason == "StepSucceeded":
            assert message.startswith("step s") and " succeeded" in message


async def test_above_the_limit_a_run_posts_milestones_not_step_events(
    cluster: Cluster, operator, fake_kubelet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHEST_STEP_EVENTS_MAX_STEPS", "3")
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    await start(cluster, chain(4))
    await wait_for(lambda: status(cluster).get("phase") == "Succeeded", timeout=15)
    await wait_for(
        lambda: run_events(cluster) and run_events(cluster)[-1]["reason"] == "Succeeded", timeout=5
    )
    assert [e["reason"] for e in run_events(cluster)] == [
        "Started",
        "Progress",
        "Progress",
        "Progress",
        "Succeeded",
    ]
