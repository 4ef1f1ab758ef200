"""PipelineJobs with the real operator on the emulated API: each exactly-once case end to end.

The job controller's clock is a test clock (the emulator stamps creation times with the real one, so the
test clock starts at real time and only moves forward). A job gets a pass when something about it changes;
the tests make one after moving the clock by touching a label of the job ("nudge"), as any edit would.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchest_operator import kube
from orchest_operator.jobs import controller as job_controller
from orchest_operator.jobs.schedule import Schedule
from tests.support.cluster import Cluster
from tests.support.waiting import WaitTimeout, wait_for

OPERATOR = "orchest_operator.handlers"
NS = "team"
JOBS = "orchest.io/v1alpha1/pipelinejobs"
RUNS = "orchest.io/v1alpha1/pipelineruns"
PIPELINES = "orchest.io/v1alpha1/pipelines"


class TestClock:
    __test__ = False

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClock]:
    from orchest_operator.handlers import startup

    fake = TestClock()
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")
    monkeypatch.setattr(startup, "JobController", functools.partial(job_controller.JobController, clock=fake))
    yield fake


def pipeline(name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"volume": {"claimName": "data"}, "steps": [{"name": "train", "file": "train.py"}]},
    }


def job(name: str = "nightly", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"pipelineRef": {"name": "p"}, **spec},
    }


def runs(cluster: Cluster, name: str = "nightly") -> list[str]:
    return [
        r["metadata"]["name"] for r in cluster.peek_all(RUNS, NS, labels={"orchest.io/pipeline-job": name})
    ]


def job_status(cluster: Cluster, name: str = "nightly") -> dict[str, Any]:
    return (cluster.peek(JOBS, name, NS) or {}).get("status") or {}


def events(cluster: Cluster, reason: str) -> list[str]:
    return [
        e["message"]
        for e in cluster.peek_all("v1/events", NS)
        if e["involvedObject"].get("kind") == "PipelineJob" and e.get("reason") == reason
    ]


_nudges = iter(range(1_000_000))


async def nudge(cluster: Cluster, name: str = "nightly") -> None:
    """Any edit of the job gives it a pass; a label is the most harmless one."""
    await cluster.api.patch(JOBS, name, {"metadata": {"labels": {"nudge": str(next(_nudges))}}}, NS)


async def settled(cluster: Cluster, name: str = "nightly") -> dict[str, Any]:
    """The job's status once the operator has seen its latest edit (every nudge included)."""

    def seen() -> dict[str, Any] | None:
        body = cluster.peek(JOBS, name, NS) or {}
        status = body.get("status") or {}
        version = body.get("metadata", {}).get("resourceVersion")
        return status if status.get("observedGeneration") and version and status.get("window") else None

    return await wait_for(seen, timeout=10, message="the job has a status")


async def quiet(predicate: Any, seconds: float = 1.0) -> None:
    """Assert ``predicate`` stays false for ``seconds`` (something must *not* happen)."""
    try:
        value = await wait_for(predicate, timeout=seconds)
    except WaitTimeout:
        return
    raise AssertionError(f"it happened: {value!r}")


def tick_after(moment: datetime, expression: str = "@hourly") -> datetime:
    return Schedule.parse(expression).next_after(moment)


async def test_a_sweep_without_a_schedule_runs_once(cluster: Cluster, operator, fake_kubelet, clock) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(
        JOBS,
        job(
            matrix={"alpha": [0.1, 0.2]},
            include=[{"alpha": 0.5}],
            maxParallelRuns=1,
            runTemplate={"workspace": "Shared"},
        ),
    )
    await wait_for(lambda: job_status(cluster).get("lastBatchPhase") == "Succeeded", timeout=20)
    names = runs(cluster)
    assert len(names) == 3 and all(n.startswith("nightly-") and n[-2:] in ("-0", "-1", "-2") for n in names)
    run = cluster.peek(RUNS, names[2], NS)
    assert run["spec"]["parameters"] == {"alpha": 0.5}
    assert run["metadata"]["ownerReferences"][0]["kind"] == "PipelineJob"
    [batch] = job_status(cluster)["batches"]
    assert [(c["index"], c["phase"]) for c in batch["combinations"]] == [
        (0, "Succeeded"),
        (1, "Succeeded"),
        (2, "Succeeded"),
    ]
    assert batch["counts"] == {"Succeeded": 3}
    # maxParallelRuns: 1 ran them one after the other
    starts = sorted((cluster.peek(RUNS, n, NS)["status"]["startTime"], n) for n in names)
    ends = {n: cluster.peek(RUNS, n, NS)["status"]["completionTime"] for n in names}
    assert all(ends[a] <= start for (_, a), (start, _) in itertools.pairwise(starts))
    # nothing runs again, not on a restart either
    clock.at += timedelta(days=3)
    await nudge(cluster)
    await quiet(lambda: len(runs(cluster)) != 3)


async def test_a_tick_runs_once_across_an_operator_restart(cluster: Cluster, operator, clock) -> None:
    first = await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly", startingDeadlineSeconds=300))
    status = await settled(cluster)
    tick = tick_after(clock.at)
    assert status["nextScheduleTime"] == tick.strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.at = tick + timedelta(seconds=1)
    await nudge(cluster)
    await wait_for(lambda: len(runs(cluster)) == 1, timeout=10)
    await first.stop()
    clock.at = tick + timedelta(seconds=30)
    await operator(OPERATOR)
    await nudge(cluster)
    await quiet(lambda: len(runs(cluster)) != 1 or events(cluster, "MissedSchedule"))
    assert job_status(cluster)["lastScheduleTime"] == tick.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_lost_status_write_after_the_creates_does_not_run_the_tick_again(
    cluster: Cluster, operator, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's status write fails after it created the batch (a kill, or the API server going away
    at that moment); the next pass, past the starting deadline, finds the runs and records the tick."""
    real = kube.patch_status
    armed = {"on": False}

    def flaky(api, cls, namespace, name, status, **kwargs):  # type: ignore[no-untyped-def]
        if armed["on"] and cls is kube.PipelineJob:
            armed["on"] = False
            clock.at += timedelta(minutes=10)  # the retry comes long after the deadline
            raise RuntimeError("connection reset")
        return real(api, cls, namespace, name, status, **kwargs)

    monkeypatch.setattr(kube, "patch_status", flaky)
    await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly", startingDeadlineSeconds=60, matrix={"a": [1, 2]}))
    await settled(cluster)
    tick = tick_after(clock.at)
    clock.at = tick
    armed["on"] = True
    await nudge(cluster)
    await wait_for(
        lambda: job_status(cluster).get("lastScheduleTime") == tick.strftime("%Y-%m-%dT%H:%M:%SZ"), timeout=10
    )
    assert not armed["on"], "the status write failed once"
    assert len(runs(cluster)) == 2
    assert events(cluster, "MissedSchedule") == []


async def test_an_api_outage_at_the_tick_runs_it_once_when_the_api_is_back(
    cluster: Cluster, operator, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = kube.list_objects
    outage = {"on": False, "refused": 0}

    def down(api, cls, namespace, selector=None):  # type: ignore[no-untyped-def]
        if outage["on"] and cls is kube.PipelineRun:
            outage["refused"] += 1
            raise RuntimeError("the API server is unreachable")
        return real(api, cls, namespace, selector)

    monkeypatch.setattr(kube, "list_objects", down)
    await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly", startingDeadlineSeconds=120))
    await settled(cluster)
    tick = tick_after(clock.at)
    clock.at = tick
    outage["on"] = True
    await nudge(cluster)
    await wait_for(lambda: outage["refused"] > 0, timeout=10)
    clock.at = tick + timedelta(seconds=90)
    outage["on"] = False
    await wait_for(
        lambda: len(runs(cluster)) == 1, timeout=10, message="the retry after the outage ran the tick"
    )
    await nudge(cluster)
    await quiet(lambda: len(runs(cluster)) != 1)


async def test_a_tick_missed_past_the_deadline_is_recorded(cluster: Cluster, operator, clock) -> None:
    first = await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly", startingDeadlineSeconds=60))
    await settled(cluster)
    await first.stop()
    clock.at = tick_after(clock.at) + timedelta(minutes=5)  # the operator was down at the tick
    await operator(OPERATOR)
    await wait_for(lambda: events(cluster, "MissedSchedule"), timeout=10)
    assert runs(cluster) == [] and job_status(cluster)["missedTicks"] == 1


async def test_suspend_then_resume_runs_no_tick_that_fell_meanwhile(
    cluster: Cluster, operator, clock
) -> None:
    await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly"))
    await settled(cluster)
    await cluster.api.patch(JOBS, "nightly", {"spec": {"suspend": True}}, NS)
    await wait_for(lambda: job_status(cluster).get("window", {}).get("suspended"), timeout=10)
    clock.at = tick_after(clock.at) + timedelta(seconds=5)
    await nudge(cluster)
    await cluster.api.patch(JOBS, "nightly", {"spec": {"suspend": False}}, NS)
    await wait_for(lambda: job_status(cluster).get("window", {}).get("suspended") is False, timeout=10)
    await quiet(lambda: runs(cluster))
    assert job_status(cluster)["nextScheduleTime"] == tick_after(clock.at).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_an_edited_schedule_runs_no_tick_from_before_the_edit(
    cluster: Cluster, operator, clock
) -> None:
    await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@yearly"))
    await settled(cluster)
    clock.at += timedelta(minutes=7)  # some */5 tick fell since the job was created
    await cluster.api.patch(JOBS, "nightly", {"spec": {"schedule": "*/5 * * * *"}}, NS)
    await wait_for(lambda: job_status(cluster).get("window", {}).get("schedule") == "*/5 * * * *", timeout=10)
    await quiet(lambda: runs(cluster))
    clock.at = tick_after(clock.at, "*/5 * * * *")
    await nudge(cluster)
    await wait_for(lambda: len(runs(cluster)) == 1, timeout=10)


async def test_replace_cancels_the_running_batch(cluster: Cluster, operator, fake_kubelet, clock) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(
        JOBS, job(schedule="@hourly", concurrencyPolicy="Replace", runTemplate={"workspace": "Shared"})
    )
    await settled(cluster)
    first_tick = tick_after(clock.at)
    clock.at = first_tick
    await nudge(cluster)
    [first] = await wait_for(lambda: runs(cluster) or None, timeout=10)
    await wait_for(
        lambda: (cluster.peek(RUNS, first, NS).get("status") or {}).get("phase") == "Running", timeout=10
    )
    clock.at = tick_after(first_tick)
    await nudge(cluster)
    await wait_for(lambda: len(runs(cluster)) == 2, timeout=10)
    assert cluster.peek(RUNS, first, NS)["spec"]["cancel"] is True
    await wait_for(lambda: cluster.peek(RUNS, first, NS)["status"].get("phase") == "Cancelled", timeout=10)
    await wait_for(lambda: events(cluster, "BatchReplaced"), timeout=10, message="kopf posts events later")


async def test_a_trigger_runs_one_batch_and_only_one(cluster: Cluster, operator, clock) -> None:
    await operator(OPERATOR)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@yearly", suspend=True, matrix={"a": [1, 2]}))
    await settled(cluster)
    annotation = {"metadata": {"annotations": {"orchest.io/trigger": "20260101-120000"}}}
    await cluster.api.patch(JOBS, "nightly", annotation, NS)
    await wait_for(lambda: len(runs(cluster)) == 2, timeout=10)
    assert sorted(runs(cluster)) == ["nightly-manual-20260101-120000-0", "nightly-manual-20260101-120000-1"]
    await nudge(cluster)
    await quiet(lambda: len(runs(cluster)) != 2)
    assert job_status(cluster)["lastTrigger"] == "20260101-120000"


async def test_isolated_runs_of_a_batch_run_side_by_side_each_in_its_copy(
    cluster: Cluster, operator, fake_kubelet, clock
) -> None:
    """The Pipeline queues its runs (concurrencyPolicy Queue, the default), but a job's runs are isolated by
    default: each copies the directory in a Job of its own first, and they do not wait for each other."""
    await operator(OPERATOR)
    await fake_kubelet(run_time=1.0, job_complete_delay=0.05)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(matrix={"seed": [1, 2, 3]}))

    def phases() -> list[str]:
        return [
            ((cluster.peek(RUNS, n, NS) or {}).get("status") or {}).get("phase", "") for n in runs(cluster)
        ]

    await wait_for(lambda: phases().count("Running") == 3, timeout=15, message="three runs at once")
    await wait_for(lambda: job_status(cluster).get("lastBatchPhase") == "Succeeded", timeout=20)
    for name in runs(cluster):
        steps = cluster.peek_all("batch/v1/jobs", NS, labels={"orchest.io/pipeline-run": name})
        by_step = {j["metadata"]["labels"]["orchest.io/step"]: j for j in steps}
        assert set(by_step) == {"orchest.workspace", "train"}
        container = by_step["train"]["spec"]["template"]["spec"]["containers"][0]
        assert container["workingDir"] == f"/project/.orchest/runs/{name}/workspace"
        status = cluster.peek(RUNS, name, NS)["status"]
        assert status["workspace"]["phase"] == "Succeeded"


async def test_forbid_skips_a_tick_while_the_batch_runs(
    cluster: Cluster, operator, fake_kubelet, clock
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await cluster.api.create(PIPELINES, pipeline())
    await cluster.api.create(JOBS, job(schedule="@hourly", concurrencyPolicy="Forbid"))
    await settled(cluster)
    first_tick = tick_after(clock.at)
    clock.at = first_tick
    await nudge(cluster)
    await wait_for(lambda: len(runs(cluster)) == 1, timeout=10)
    clock.at = tick_after(first_tick)
    await nudge(cluster)
    await wait_for(lambda: events(cluster, "TickSkipped"), timeout=10, message="the skip is recorded")
    assert len(runs(cluster)) == 1
    skipped = next(b for b in job_status(cluster)["batches"] if b["phase"] == "Skipped")
    assert skipped["scheduledTime"] == clock.at.strftime("%Y-%m-%dT%H:%M:%SZ")
