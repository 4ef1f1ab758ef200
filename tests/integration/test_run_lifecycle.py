"""Run lifecycle with the real operator: cancel, concurrency policy and priority, rerun, history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.integration.test_run_operator import (
    DIAMOND,
    NS,
    OPERATOR,
    RUNS,
    fail_steps,
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
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


def phase(cluster: Cluster, name: str) -> str | None:
    return status(cluster, name).get("phase")


async def test_cancel_of_a_running_run_deletes_its_jobs(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    await start(cluster, pipeline(), run())
    await wait_for(lambda: jobs(cluster), timeout=10)
    await cluster.api.patch(RUNS, "r1", {"spec": {"cancel": True}}, NS)
    assert await wait_for(lambda: finished(cluster), timeout=10) == "Cancelled"
    st = status(cluster)
    assert set(s["phase"] for s in st["steps"].values()) == {"Cancelled"}
    assert st["conditions"][0]["reason"] == "Cancelled"
    await wait_for(lambda: not jobs(cluster), timeout=5, message="running Jobs deleted")


async def test_queue_of_three_runs_of_mixed_priority(cluster: Cluster, operator, fake_kubelet) -> None:
    """One run at a time per pipeline; a later Interactive run starts right after the active one."""
    order: list[str] = []

    def record(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        run_name = job["metadata"]["annotations"]["orchest.io/pipeline-run"]
        if run_name not in order:
            order.append(run_name)
        return Outcome(run_time=0.3)

    one_step = [{"name": "only", "file": "x.py"}]
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=record)
    await start(cluster, pipeline(steps=one_step), run("first"))
    await wait_for(lambda: phase(cluster, "first") == "Running", timeout=10)
    await start(cluster, run("background"))
    await wait_for(lambda: phase(cluster, "background") == "Queued", timeout=10)
    await start(cluster, run("interactive", priority="Interactive"))
    await wait_for(lambda: phase(cluster, "interactive") == "Queued", timeout=10)
    assert "waiting for run first" in status(cluster, "background")["conditions"][0]["message"]
    pipe = cluster.peek("orchest.io/v1alpha1/pipelines", "p", NS)["status"]
    assert pipe["activeRuns"] == ["first"]

    for name in ("first", "background", "interactive"):
        assert await wait_for(lambda name=name: finished(cluster, name), timeout=15) == "Succeeded"
    assert order == ["first", "interactive", "background"]


async def test_allow_runs_side_by_side(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=0.5, job_complete_delay=0.05)
    await start(cluster, pipeline(concurrencyPolicy="Allow"), run("x"), run("y"))
    await wait_for(lambda: phase(cluster, "x") == "Running" and phase(cluster, "y") == "Running", timeout=10)


async def test_forbid_fails_a_second_run_at_once(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=2, job_complete_delay=0.05)
    await start(cluster, pipeline(concurrencyPolicy="Forbid"), run("x"))
    await wait_for(lambda: phase(cluster, "x") == "Running", timeout=10)
    await start(cluster, run("y"))
    assert await wait_for(lambda: finished(cluster, "y"), timeout=10) == "Failed"
    cond = status(cluster, "y")["conditions"][0]
    assert cond["reason"] == "ConcurrencyForbidden" and "run x is active" in cond["message"]
    assert jobs(cluster, "y") == []


async def test_cancel_of_a_queued_run_never_starts_it(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=0.5, job_complete_delay=0.05)
    await start(cluster, pipeline(), run("x"), run("y"))
    await wait_for(lambda: phase(cluster, "y") == "Queued", timeout=10)
    await cluster.api.patch(RUNS, "y", {"spec": {"cancel": True}}, NS)
    assert await wait_for(lambda: finished(cluster, "y"), timeout=10) == "Cancelled"
    assert await wait_for(lambda: finished(cluster, "x"), timeout=15) == "Succeeded"
    assert jobs(cluster, "y") == []


async def test_rerun_after_a_failure_in_the_middle_of_a_diamond(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    failing = {"on": True}

    def outcome(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        return Outcome(succeed=not (failing["on"] and step_of(job) == "b"))

    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=outcome)
    await start(cluster, pipeline(steps=DIAMOND, concurrencyPolicy="Allow"), run("first"))
    assert await wait_for(lambda: finished(cluster, "first"), timeout=10) == "Failed"
    failing["on"] = False
    await start(cluster, run("again", rerunOf="first"))
    assert await wait_for(lambda: finished(cluster, "again"), timeout=10) == "Succeeded"
    phases = {n: s["phase"] for n, s in status(cluster, "again")["steps"].items()}
    assert phases == {"a": "Reused", "b": "Succeeded", "c": "Reused", "d": "Succeeded"}
    assert sorted(step_of(j) for j in jobs(cluster, "again")) == ["b", "d"]


async def test_rerun_of_an_active_run_is_refused(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=5, job_complete_delay=0.05)
    await start(cluster, pipeline(concurrencyPolicy="Allow"), run("first"))
    await wait_for(lambda: phase(cluster, "first") == "Running", timeout=10)
    await start(cluster, run("again", rerunOf="first"))
    assert await wait_for(lambda: finished(cluster, "again"), timeout=10) == "Failed"
    cond = status(cluster, "again")["conditions"][0]
    assert cond["reason"] == "InvalidRerun" and "still Running" in cond["message"]


async def test_history_keeps_run_history_limit_finished_runs(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    kubelet = await fake_kubelet(job_complete_delay=0.05, outcome=fail_steps())
    await start(cluster, pipeline(steps=[{"name": "only", "file": "x.py"}], runHistoryLimit=2))
    for i in range(4):
        await start(cluster, run(f"r{i}"))
        assert await wait_for(lambda i=i: finished(cluster, f"r{i}"), timeout=10) == "Succeeded"

    def remaining() -> list[str]:
        return sorted(r["metadata"]["name"] for r in cluster.peek_all(RUNS, NS))

    await wait_for(lambda: remaining() == ["r2", "r3"], timeout=10)
    await kubelet.collect_garbage()
    assert jobs(cluster, "r0") == [] and len(jobs(cluster, "r3")) == 1
