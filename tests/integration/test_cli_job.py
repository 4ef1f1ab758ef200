"""``orchest job trigger|suspend|resume|status`` as a user runs them, against the emulated cluster with the
real operator and the fake kubelet behind them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_cli_cluster import NS, PIPELINE, orchest
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

OPERATOR = "orchest_operator.handlers"
JOBS = "orchest.io/v1alpha1/pipelinejobs"
RUNS = "orchest.io/v1alpha1/pipelineruns"
JOB = {
    "apiVersion": "orchest.io/v1alpha1",
    "kind": "PipelineJob",
    "metadata": {"name": "nightly", "namespace": NS},
    "spec": {"pipelineRef": {"name": "etl"}, "schedule": "@yearly", "matrix": {"rate": [0.1, 0.2]}},
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


def job(cluster: Cluster) -> dict[str, Any]:
    return cluster.peek(JOBS, "nightly", NS) or {}


def runs(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.peek_all(RUNS, NS, labels={"orchest.io/pipeline-job": "nightly"})


async def test_trigger_runs_a_batch_and_status_shows_it(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    await cluster.api.create(
        "orchest.io/v1alpha1/pipelines", {**PIPELINE, "metadata": {"name": "etl", "namespace": NS}}
    )
    await cluster.api.create(JOBS, JOB)
    await wait_for(lambda: (job(cluster).get("status") or {}).get("nextScheduleTime"), timeout=10)

    triggered = await orchest("job", "trigger", "nightly")
    assert triggered.code == 0, triggered.err
    assert "batch manual-" in triggered.out
    await wait_for(
        lambda: (job(cluster).get("status") or {}).get("lastBatchPhase") == "Succeeded", timeout=20
    )
    assert len(runs(cluster)) == 2
    assert {r["spec"]["parameters"]["rate"] for r in runs(cluster)} == {0.1, 0.2}

    shown = await orchest("job", "status", "nightly")
    assert shown.code == 0, shown.err
    assert "Schedule:  @yearly in UTC" in shown.out
    assert "Manual" in shown.out and "Succeeded 2" in shown.out
    assert "Runs of batch manual-" in shown.out and shown.out.count("Succeeded") >= 3

    again = await orchest("job", "trigger", "nightly")
    assert again.code == 0
    await wait_for(lambda: len(runs(cluster)) == 4, timeout=10, message="a second trigger is a second batch")


async def test_suspend_and_resume(cluster: Cluster, operator) -> None:
    await operator(OPERATOR)
    await cluster.api.create(JOBS, JOB)
    suspended = await orchest("job", "suspend", "nightly")
    assert suspended.code == 0 and "suspended" in suspended.out
    assert job(cluster)["spec"]["suspend"] is True
    await wait_for(
        lambda: (job(cluster).get("status") or {}).get("conditions", [{}])[0].get("reason") == "Suspended",
        timeout=10,
    )
    assert "(suspended)" in (await orchest("job", "status", "nightly")).out
    resumed = await orchest("job", "resume", "nightly")
    assert resumed.code == 0 and job(cluster)["spec"]["suspend"] is False


async def test_a_missing_job_is_one_line_and_exit_one(cluster: Cluster) -> None:
    for verb in ("trigger", "suspend", "resume", "status"):
        result = await orchest("job", verb, "ghost")
        assert result.code == 1
        assert result.err.strip() == "orchest: pipelinejob 'ghost' in namespace 'default' not found"
