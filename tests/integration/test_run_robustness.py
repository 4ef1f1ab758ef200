"""The operator where reviews found it fragile: deleted runs, recreated runs, deleted pipelines, foreground
deletion, transient API errors. Real operator, emulated API, fake kubelet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from orchest_operator import naming
from tests.integration.test_run_operator import (
    NS,
    OPERATOR,
    RUNS,
    finished,
    jobs,
    pipeline,
    run,
    start,
    status,
    step_of,
)
from tests.support.cluster import Cluster
from tests.support.kubelet import Outcome
from tests.support.waiting import WaitTimeout, wait_for

ONE = [{"name": "only", "file": "x.py"}]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


def phase(cluster: Cluster, name: str) -> str | None:
    return status(cluster, name).get("phase")


async def test_queued_run_starts_when_the_active_run_is_deleted(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    kubelet = await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=ONE), run("x"))
    await wait_for(lambda: phase(cluster, "x") == "Running", timeout=10)
    await start(cluster, run("y"))
    await wait_for(lambda: phase(cluster, "y") == "Queued", timeout=10)
    await cluster.api.delete(RUNS, "x", NS)
    await kubelet.collect_garbage()
    await wait_for(lambda: phase(cluster, "y") == "Running", timeout=10, message="y admitted after x deleted")


async def test_a_recreated_run_of_the_same_name_runs_its_steps_again(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    executed: list[str] = []

    def record(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        executed.append(job["metadata"]["uid"])
        return Outcome()

    await operator(OPERATOR)
    kubelet = await fake_kubelet(job_complete_delay=0.05, outcome=record)
    await start(cluster, pipeline(steps=ONE), run("r1"))
    assert await wait_for(lambda: finished(cluster, "r1"), timeout=10) == "Succeeded"
    await cluster.api.delete(RUNS, "r1", NS)  # the GC has not removed r1's Job yet
    await start(cluster, run("r1"))

    def waiting() -> bool:
        message = (status(cluster, "r1").get("steps", {}).get("only") or {}).get("message") or ""
        return "waiting for the garbage collector" in message

    await wait_for(waiting, timeout=10)
    assert finished(cluster, "r1") is None, "the old run's Job must not count for the new run"
    await kubelet.collect_garbage()  # the old Job goes; the new run's create is retried and succeeds
    outcome = await wait_for(lambda: finished(cluster, "r1"), timeout=15)
    assert outcome == "Succeeded", status(cluster, "r1")
    assert len(executed) == 2, f"the new r1 'succeeded' without running its step (executions: {executed})"


async def test_deleting_the_pipeline_does_not_release_the_queue(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=1.5, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=ONE), run("x"))
    await wait_for(lambda: phase(cluster, "x") == "Running", timeout=10)
    await start(cluster, run("y"), run("z"))
    await wait_for(lambda: phase(cluster, "y") == "Queued" and phase(cluster, "z") == "Queued", timeout=10)
    await cluster.api.delete("orchest.io/v1alpha1/pipelines", "p", NS)
    await wait_for(lambda: cluster.peek("orchest.io/v1alpha1/pipelines", "p", NS) is None, timeout=10)
    both = False

    def watch() -> Any:
        nonlocal both
        both = both or (phase(cluster, "y") == "Running" and phase(cluster, "z") == "Running")
        return finished(cluster, "y") and finished(cluster, "z")

    await wait_for(watch, timeout=20)
    assert not both, "two runs of a Queue pipeline ran side by side on the shared volume"


async def test_foreground_deletion_of_a_run_starts_no_new_jobs(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    """kubectl delete --cascade=foreground: the GC deletes the run's Jobs while the run still exists
    (deletionTimestamp + foregroundDeletion finalizer). Played by hand: delete the run in the foreground,
    then delete its running Job as the GC would."""
    wide = [{"name": f"w{i}", "file": "x.py"} for i in range(4)]
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=wide), run("r1", parallelism=1, failurePolicy="Continue"))
    await wait_for(lambda: len(jobs(cluster)) == 1, timeout=10)
    await cluster.api.delete(RUNS, "r1", NS, propagation_policy="Foreground")
    assert cluster.peek(RUNS, "r1", NS)["metadata"]["deletionTimestamp"]
    await cluster.api.delete("batch/v1/jobs", naming.job_name("r1", "w0"), NS)
    try:
        await wait_for(lambda: {step_of(j) for j in jobs(cluster)} - {"w0"}, timeout=3)
    except WaitTimeout:
        return
    steps = {n: s["phase"] for n, s in status(cluster).get("steps", {}).items()}
    raise AssertionError(f"a Job was created for a run being deleted; its steps: {steps}")


async def test_a_transient_error_after_a_run_finishes_does_not_strand_the_queue(
    cluster: Cluster, operator, fake_kubelet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One failed LIST in _phase_changed (after the finished status is written) and nobody pokes y again."""
    from orchest_operator import aiokube, kube

    real = aiokube.APIClient.list_objects
    armed = {"on": False}

    async def flaky(api, cls, namespace, selector=None):  # type: ignore[no-untyped-def]
        if armed["on"] and cls is kube.PipelineRun and finished(cluster, "x"):
            armed["on"] = False
            raise RuntimeError("transient: connection reset")
        return await real(api, cls, namespace, selector)

    monkeypatch.setattr(aiokube.APIClient, "list_objects", flaky)
    await operator(OPERATOR)
    await fake_kubelet(run_time=1.0, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=ONE), run("x"))
    await wait_for(lambda: phase(cluster, "x") == "Running", timeout=10)
    await start(cluster, run("y"))
    await wait_for(lambda: phase(cluster, "y") == "Queued", timeout=10)
    armed["on"] = True
    assert await wait_for(lambda: finished(cluster, "x"), timeout=10) == "Succeeded"
    await wait_for(lambda: phase(cluster, "y") in ("Running", "Succeeded"), timeout=10, message="y admitted")


async def test_a_job_deleted_before_any_event_of_it_was_indexed_fails_its_step(
    cluster: Cluster, operator
) -> None:
    """The ADDED event of a Job the operator created is dropped before kopf sees it (``echoes``): with no
    Job controller to write its status, no event of it ever reaches the index. Deleted by hand then, the
    Job is still noticed as gone, as any deleted Job is."""
    await operator(OPERATOR)
    await start(cluster, pipeline(steps=ONE), run("x"))
    await wait_for(lambda: bool(jobs(cluster, "x")), timeout=10)
    name = jobs(cluster, "x")[0]["metadata"]["name"]
    await cluster.api.delete("batch/v1/jobs", name, NS)
    assert await wait_for(lambda: finished(cluster, "x"), timeout=10) == "Failed"
    assert "disappeared" in status(cluster, "x")["steps"]["only"]["message"]
