"""``orchest submit/status/cancel/rerun/logs`` through the official client against the emulated cluster,
with the real operator and the fake kubelet doing the work behind them."""

from __future__ import annotations

import asyncio
import json
import sys
from asyncio.subprocess import PIPE
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_run_operator import OPERATOR, finished, status, step_of
from tests.support.cluster import Cluster
from tests.support.kubelet import Outcome
from tests.support.waiting import wait_for

NS = "default"
PIPELINE = {
    "apiVersion": "orchest.io/v1alpha1",
    "kind": "Pipeline",
    "metadata": {"name": "etl"},
    "spec": {
        "volume": {"claimName": "data"},
        "concurrencyPolicy": "Allow",
        "parameters": {"rate": 0.1},
        "steps": [
            {"name": "extract", "file": "extract.py"},
            {"name": "load", "file": "load.ipynb", "dependsOn": ["extract"]},
        ],
    },
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(PIPELINE))
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


async def orchest(*argv: str) -> Result:
    """The CLI as a user runs it: a process of its own, reading KUBECONFIG (the emulator's)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchest_operator.cli", *argv, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def test_submit_watch_runs_the_pipeline_and_exits_zero(
    cluster: Cluster, operator, fake_kubelet, pipeline_file: Path
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05)
    result = await orchest("submit", str(pipeline_file), "--name", "r1", "-p", "rate=0.7", "--watch")
    out = result.out
    assert result.code == 0, result.err
    assert "pipelinerun r1 created in namespace default" in out
    assert "pipelinerun r1 Succeeded" in out
    run = cluster.peek("orchest.io/v1alpha1/pipelineruns", "r1", NS)
    assert run["spec"]["parameters"] == {"rate": 0.7}
    assert run["spec"]["parallelism"] == 0
    assert cluster.peek("orchest.io/v1alpha1/pipelines", "etl", NS)["spec"]["steps"][0]["name"] == "extract"


async def test_submit_watch_exits_one_when_a_step_fails_then_rerun_fixes_it(
    cluster: Cluster, operator, fake_kubelet, pipeline_file: Path
) -> None:
    broken = {"on": True}

    def outcome(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        return Outcome(succeed=not (broken["on"] and step_of(job) == "load"))

    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=outcome)
    failed = await orchest("submit", str(pipeline_file), "--name", "r1", "--watch")
    assert failed.code == 1 and "pipelinerun r1 Failed" in failed.out

    shown = await orchest("status", "r1")
    assert shown.code == 0
    text = shown.out
    assert "Phase:     Failed" in text and "load" in text and "Succeeded" in text

    broken["on"] = False
    again_run = await orchest("rerun", "r1", "--watch")
    assert again_run.code == 0, again_run.err
    out = again_run.out
    assert "to rerun r1" in out and "Succeeded" in out
    reruns = [r for r in cluster.peek_all("orchest.io/v1alpha1/pipelineruns", NS) if r["spec"].get("rerunOf")]
    [again] = reruns
    phases = {n: s["phase"] for n, s in again["status"]["steps"].items()}
    assert phases == {"extract": "Reused", "load": "Succeeded"}


async def test_cancel_and_status_output_formats(
    cluster: Cluster, operator, fake_kubelet, pipeline_file: Path
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    assert (await orchest("submit", str(pipeline_file), "--name", "r1")).code == 0
    await wait_for(lambda: status(cluster, "r1", NS).get("phase") == "Running", timeout=10)
    cancelled = await orchest("cancel", "r1")
    assert cancelled.code == 0 and "cancel requested" in cancelled.out
    assert await wait_for(lambda: finished(cluster, "r1", NS), timeout=10) == "Cancelled"
    shown = await orchest("status", "r1", "-o", "json")
    assert shown.code == 0 and json.loads(shown.out)["status"]["phase"] == "Cancelled"
    shown = await orchest("status", "r1", "-o", "yaml")
    assert yaml.safe_load(shown.out)["status"]["phase"] == "Cancelled"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["status", "nope"], "pipelinerun 'nope' in namespace 'default' not found"),
        (["cancel", "nope"], "pipelinerun 'nope' in namespace 'default' not found"),
        (["rerun", "nope"], "pipelinerun 'nope' in namespace 'default' not found"),
        (["logs", "nope"], "pipelinerun 'nope' in namespace 'default' not found"),
    ],
)
async def test_missing_runs_are_one_line_errors(cluster: Cluster, argv: list[str], needle: str) -> None:
    result = await orchest(*argv)
    err = result.err
    assert result.code == 1
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_rerun_of_an_active_run_is_refused(
    cluster: Cluster, operator, fake_kubelet, pipeline_file: Path
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=60, job_complete_delay=0.05)
    assert (await orchest("submit", str(pipeline_file), "--name", "r1")).code == 0
    await wait_for(lambda: status(cluster, "r1", NS).get("phase") == "Running", timeout=10)
    refused = await orchest("rerun", "r1")
    assert refused.code == 1 and "still Running; rerun it once it has finished" in refused.err


async def test_logs_without_pods_says_why(cluster: Cluster, operator) -> None:
    await cluster.api.create(
        "orchest.io/v1alpha1/pipelines", {**PIPELINE, "metadata": {"name": "etl", "namespace": NS}}
    )
    await cluster.api.create(
        "orchest.io/v1alpha1/pipelineruns",
        {
            "apiVersion": "orchest.io/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {"name": "r1", "namespace": NS},
            "spec": {"pipelineRef": {"name": "etl"}},
        },
    )
    result = await orchest("logs", "r1")
    assert result.code == 1 and "no pods for run 'r1' (yet)" in result.err


@pytest.mark.parametrize(
    ("change", "argv", "needle"),
    [
        (lambda p: p["spec"].pop("volume"), [], "spec.volume is required on a cluster"),
        (lambda p: None, ["--steps", "zz"], "selected step 'zz' does not exist"),
        (lambda p: None, ["-p", "novalue"], "expected KEY=VALUE"),
        (lambda p: None, ["--pending-timeout", "0"], "must be a positive whole number of seconds, got '0'"),
        (lambda p: None, ["--pending-timeout", "soon"], "must be a positive whole number of seconds"),
    ],
)
async def test_submit_rejects_bad_input_before_touching_the_cluster(
    cluster: Cluster,
    tmp_path: Path,
    change: Any,
    argv: list[str],
    needle: str,
) -> None:
    doc = json.loads(json.dumps(PIPELINE))
    change(doc)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = await orchest("submit", str(path), *argv)
    assert result.code == 2 and needle in result.err
    assert cluster.peek_all("orchest.io/v1alpha1/pipelines") == []


async def test_no_cluster_configured_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = await orchest("status", "r1", "--kubeconfig", str(tmp_path / "missing"))
    assert result.code == 1 and "no cluster configured" in result.err
