"""The real orchest operator (kopf) against the emulated API, with a fake kubelet and Job controller.

Each test plays one scenario of issue 4 end to end: objects go in through HTTP, the operator reacts to
watch events, the fake kubelet runs pods and marks Jobs, and the test reads what the operator wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from orchest_operator import naming
from tests.support.cluster import Cluster
from tests.support.kubelet import Outcome
from tests.support.waiting import wait_for

OPERATOR = "orchest_operator.handlers"
NS = "team"
RUNS = "orchest.io/v1alpha1/pipelineruns"
DIAMOND = [
    {"name": "a", "file": "a.ipynb"},
    {"name": "b", "file": "b.py", "dependsOn": ["a"]},
    {"name": "c", "file": "c.sh", "dependsOn": ["a"]},
    {"name": "d", "file": "d.py", "dependsOn": ["b", "c"]},
]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


def pipeline(name: str = "p", steps: list[dict[str, Any]] = DIAMOND, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"volume": {"claimName": "data"}, "steps": steps, **spec},
    }


def run(name: str = "r1", pipeline_name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"pipelineRef": {"name": pipeline_name}, **spec},
    }


def status(cluster: Cluster, name: str = "r1", namespace: str = NS) -> dict[str, Any]:
    return (cluster.peek(RUNS, name, namespace) or {}).get("status") or {}


def finished(cluster: Cluster, name: str = "r1", namespace: str = NS) -> Any:
    phase = status(cluster, name, namespace).get("phase")
    return phase if phase in ("Succeeded", "Failed", "Cancelled") else None


def jobs(cluster: Cluster, run_name: str = "r1") -> list[dict[str, Any]]:
    return cluster.peek_all("batch/v1/jobs", NS, labels={naming.LABEL_RUN: run_name})


def step_of(obj: Mapping[str, Any]) -> str:
    return obj["metadata"]["labels"][naming.LABEL_STEP]


def fail_steps(*names: str, message: str | None = None) -> Any:
    def outcome(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        if step_of(job) in names:
            return Outcome(succeed=False, message=message)
        return Outcome()

    return outcome


async def start(cluster: Cluster, *objects: dict[str, Any]) -> None:
    for obj in objects:
        resource = "orchest.io/v1alpha1/pipelines" if obj["kind"] == "Pipeline" else RUNS
        await cluster.api.create(resource, obj)


async def test_diamond_runs_in_dag_order_and_reports_status(cluster: Cluster, operator, fake_kubelet) -> None:
    started: list[str] = []

    def record(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        started.append(step_of(job))
        return Outcome(run_time=0.1)

    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.5, outcome=record)
    await start(cluster, pipeline(), run())
    assert await wait_for(lambda: finished(cluster), timeout=15) == "Succeeded"

    assert started[0] == "a" and started[-1] == "d" and set(started[1:3]) == {"b", "c"}
    st = status(cluster)
    assert st["progress"] == "4/4"
    assert {n: s["phase"] for n, s in st["steps"].items()} == dict.fromkeys("abcd", "Succeeded")
    assert st["steps"]["a"]["jobName"] == naming.job_name("r1", "a")
    assert st["snapshot"]["selected"] == ["a", "b", "c", "d"]
    assert st["observedGeneration"] == 1
    [cond] = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Succeeded", "True", "Succeeded")
    for job in jobs(cluster):
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("PipelineRun", "r1", True)

    def pipeline_status() -> dict[str, Any]:
        return cluster.peek("orchest.io/v1alpha1/pipelines", "p", NS).get("status") or {}

    await wait_for(lambda: pipeline_status().get("activeRuns") == [], timeout=5)
    assert pipeline_status()["stepCount"] == 4
    assert pipeline_status()["lastRun"] == "r1"


async def test_dependents_start_when_the_pod_succeeds_not_when_the_job_completes(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    """With a Job controller that takes 3 s to mark Complete, a 3-step chain still ends in well under 9 s:
    each dependent starts from the pod's Succeeded phase."""
    chain = [{"name": f"s{i}", "file": "x.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(3)]
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=3.0)
    await start(cluster, pipeline(steps=chain), run())
    await wait_for(lambda: len(jobs(cluster)) == 3, timeout=5)
    complete = [
        j for j in jobs(cluster) if any(c["type"] == "Complete" for c in j["status"].get("conditions", []))
    ]
    assert complete == [], "all three Jobs were created before the first was marked Complete"
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Succeeded"


async def test_events_are_posted_for_the_run(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.1)
    await start(cluster, pipeline(steps=[{"name": "only", "file": "x.py"}]), run())
    await wait_for(lambda: finished(cluster), timeout=10)

    def reasons() -> set[str]:
        events = cluster.peek_all("v1/events", NS)
        return {e.get("reason") for e in events if e["involvedObject"].get("kind") == "PipelineRun"}

    expected = {"Started", "StepStarted", "StepSucceeded", "Succeeded"}
    await wait_for(lambda: expected <= reasons(), timeout=10)
    assert reasons() == expected


async def test_parallelism_limits_concurrent_jobs(cluster: Cluster, operator, fake_kubelet) -> None:
    wide = [{"name": f"w{i}", "file": "x.py"} for i in range(5)]
    await operator(OPERATOR)
    kubelet = await fake_kubelet(run_time=0.3, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=wide), run(parallelism=2))
    peak = 0

    def track() -> Any:
        nonlocal peak
        running = sum(1 for s in status(cluster).get("steps", {}).values() if s["phase"] == "Running")
        peak = max(peak, running)
        return finished(cluster)

    assert await wait_for(track, timeout=15) == "Succeeded"
    assert peak == 2
    assert not kubelet.errors


async def test_fail_fast_skips_the_rest_and_records_the_failing_cell(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    steps = [
        {"name": "a", "file": "a.ipynb"},
        {"name": "b", "file": "b.py", "dependsOn": ["a"]},
        {"name": "other", "file": "o.py"},
    ]
    failure = json.dumps({"cell": 2, "ename": "KeyError", "evalue": "'x'"})
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=fail_steps("a", message=failure))
    await start(cluster, pipeline(steps=steps), run(parallelism=1))
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    st = status(cluster)
    assert {n: s["phase"] for n, s in st["steps"].items()} == {
        "a": "Failed",
        "b": "Skipped",
        "other": "Skipped",
    }
    assert st["steps"]["a"]["failure"] == {"cell": 2, "ename": "KeyError", "evalue": "'x'"}
    assert st["conditions"][0]["reason"] == "Failed"


async def test_continue_runs_everything_not_downstream_of_a_failure(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=fail_steps("b"))
    await start(cluster, pipeline(), run(failurePolicy="Continue"))
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    phases = {n: s["phase"] for n, s in status(cluster)["steps"].items()}
    assert phases == {"a": "Succeeded", "b": "Failed", "c": "Succeeded", "d": "Skipped"}


async def test_retries_are_the_jobs_backoff_limit(cluster: Cluster, operator, fake_kubelet) -> None:
    attempts: list[str] = []

    def flaky(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        attempts.append(pod["metadata"]["name"])
        return Outcome(succeed=len(attempts) >= 3)

    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=flaky)
    await start(cluster, pipeline(steps=[{"name": "flaky", "file": "x.py", "retries": 2}]), run())
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Succeeded"
    [job] = jobs(cluster)
    assert job["spec"]["backoffLimit"] == 2
    assert status(cluster)["steps"]["flaky"]["attempts"] == 3


async def test_run_timeout_fails_the_run_and_deletes_running_jobs(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await start(cluster, pipeline(), run(timeoutSeconds=1))
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    st = status(cluster)
    assert st["conditions"][0]["reason"] == "Timeout"
    assert st["steps"]["a"]["phase"] == "Failed" and st["steps"]["d"]["phase"] == "Skipped"
    await wait_for(lambda: not jobs(cluster), timeout=5, message="the running Job was deleted")


@pytest.mark.parametrize(
    ("objects", "reason", "needle"),
    [
        ([run(pipeline_name="missing")], "PipelineNotFound", "pipeline 'missing' not found"),
        ([pipeline(volume=None), run()], "VolumeMissing", "no spec.volume"),
        ([pipeline(), run(selection={"mode": "Selected", "steps": ["zz"]})], "InvalidSelection", "'zz'"),
    ],
)
async def test_bad_input_fails_the_run_with_a_reason(
    cluster: Cluster, operator, objects: list[dict[str, Any]], reason: str, needle: str
) -> None:
    await operator(OPERATOR)
    for obj in objects:
        if obj["kind"] == "Pipeline" and obj["spec"].get("volume") is None:
            obj["spec"].pop("volume")
    await start(cluster, *objects)
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    cond = status(cluster)["conditions"][0]
    assert cond["reason"] == reason and needle in cond["message"]
    assert jobs(cluster) == []


async def test_invalid_pipeline_stored_without_schema_check_fails_the_run(cluster: Cluster, operator) -> None:
    """An API server without our CRD schema (or an older CRD) could store a cyclic pipeline."""
    cyclic = [
        {"name": "a", "file": "a.py", "dependsOn": ["b"]},
        {"name": "b", "file": "b.py", "dependsOn": ["a"]},
    ]
    await operator(OPERATOR)
    await start(cluster, pipeline(steps=cyclic), run())
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Failed"
    cond = status(cluster)["conditions"][0]
    assert cond["reason"] == "InvalidPipeline" and "dependency cycle: a -> b -> a" in cond["message"]


async def test_operator_restart_mid_run_creates_no_duplicate_jobs(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    chain = [{"name": f"s{i}", "file": "x.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(4)]
    first = await operator(OPERATOR)
    kubelet = await fake_kubelet(run_time=0.4, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=chain), run())
    await wait_for(lambda: len(jobs(cluster)) == 2, timeout=10)
    await first.stop()
    await operator(OPERATOR)
    assert await wait_for(lambda: finished(cluster), timeout=15) == "Succeeded"
    names = sorted(j["metadata"]["name"] for j in jobs(cluster))
    assert names == sorted(naming.job_name("r1", f"s{i}") for i in range(4))
    assert not kubelet.errors


async def test_restart_after_job_created_but_before_status_written(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    """The crash window between POSTing a Job and PATCHing status: the restarted operator adopts the Job."""
    await start(
        cluster,
        pipeline(steps=[{"name": "a", "file": "x.py"}, {"name": "b", "file": "y.py", "dependsOn": ["a"]}]),
    )
    obj = run()
    await cluster.api.create(RUNS, obj)
    stored = cluster.peek(RUNS, "r1", NS)
    # What the operator would have written before dying: a snapshot, step a started, no Job status yet.
    from orchest_operator.builders.job import JobOptions, step_job
    from orchest_operator.models import PipelineSpec

    spec = PipelineSpec.model_validate(
        pipeline(steps=[{"name": "a", "file": "x.py"}, {"name": "b", "file": "y.py", "dependsOn": ["a"]}])[
            "spec"
        ]
    )
    await cluster.api.create(
        "batch/v1/jobs",
        step_job(
            run=stored,
            spec=spec,
            step_name="a",
            parameters={},
            priority="Background",
            options=JobOptions("runner:test"),
        ),
    )
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Succeeded"
    assert sorted(j["metadata"]["name"] for j in jobs(cluster)) == sorted(
        naming.job_name("r1", s) for s in "ab"
    )


async def test_deleting_a_run_cascades_to_its_jobs_and_pods(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    kubelet = await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await start(cluster, pipeline(), run())
    await wait_for(lambda: cluster.peek_all("v1/pods", NS), timeout=10)
    await cluster.api.delete(RUNS, "r1", NS)
    await wait_for(lambda: cluster.peek(RUNS, "r1", NS) is None, timeout=5)
    removed = await kubelet.collect_garbage()
    assert any(naming.job_name("r1", "a") in r for r in removed)
    assert jobs(cluster) == [] and cluster.peek_all("v1/pods", NS) == []


async def test_deleting_a_pipeline_leaves_finished_runs_alone(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    kubelet = await fake_kubelet(job_complete_delay=0.05)
    await start(cluster, pipeline(steps=[{"name": "a", "file": "x.py"}]), run())
    await wait_for(lambda: finished(cluster), timeout=10)
    await cluster.api.delete("orchest.io/v1alpha1/pipelines", "p", NS)
    await kubelet.collect_garbage()
    assert finished(cluster) == "Succeeded"
    assert len(jobs(cluster)) == 1
