"""The Argo CD health checks, run as Argo CD runs them: a Lua function body with the object as ``obj``.

Argo CD embeds gopher-lua, a Lua 5.1, so the scripts run on lupa's Lua 5.1 here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests/argocd"
KEY = "resource.customizations.health.orchest.io_{}"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    script = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())["data"][KEY.format(kind)]
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj)\n{script}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return result["status"], result["message"]


def run(phase: str | None = None, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "r", "generation": 1},
        "spec": {"pipelineRef": {"name": "p"}},
    }
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": 1, **status}
    return obj


def pipeline(session: dict[str, Any] | None = None, enabled: bool = False, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p", "generation": 2},
        "spec": {"steps": [{"name": "a", "file": "a.py"}], "session": {"enabled": enabled}},
        "status": {"stepCount": 1, "observedGeneration": 2, **status},
    }
    if session is not None:
        obj["status"]["session"] = session
    return obj


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Queued", "Progressing"),
        ("Running", "Progressing"),
        ("Succeeded", "Healthy"),
        ("Failed", "Degraded"),
        ("Cancelled", "Degraded"),
        ("Exploded", "Unknown"),
    ],
)
def test_run_health_follows_its_phase(phase: str, expected: str) -> None:
    assert health("PipelineRun", run(phase))[0] == expected


def test_run_message_carries_progress_and_the_condition_message() -> None:
    failed = run(
        "Failed",
        progress="2/5",
        conditions=[
            {"type": "Other", "status": "True", "reason": "X", "message": "ignored"},
            {"type": "Succeeded", "status": "False", "reason": "Failed", "message": "step train failed"},
        ],
    )
    assert health("PipelineRun", failed) == ("Degraded", "Failed (2/5 steps): step train failed")


def test_run_without_status_waits_for_the_operator() -> None:
    assert health("PipelineRun", run()) == ("Progressing", "Waiting for the orchest operator")


def test_run_status_of_an_older_generation_is_not_trusted() -> None:
    stale = run("Succeeded")
    stale["metadata"]["generation"] = 2
    assert health("PipelineRun", stale) == (
        "Progressing",
        "Waiting for the orchest operator to see generation 2",
    )


@pytest.mark.parametrize(
    ("session", "enabled", "expected"),
    [
        (None, False, ("Healthy", "1 steps")),
        ({"phase": "Stopped"}, False, ("Healthy", "1 steps")),
        ({"phase": "Starting"}, True, ("Progressing", "Session starting")),
        ({"phase": "Stopped"}, True, ("Progressing", "Session starting")),
        (None, True, ("Progressing", "Session starting")),
        ({"phase": "Ready", "url": "http://x"}, True, ("Healthy", "Session ready")),
        (
            {"phase": "Failed", "reason": "Timeout", "message": "not ready within 300 s"},
            True,
            ("Degraded", "Session failed: Timeout: not ready within 300 s"),
        ),
        ({"phase": "Failed"}, False, ("Degraded", "Session failed")),
    ],
)
def test_pipeline_health_follows_its_session(
    session: dict[str, Any] | None, enabled: bool, expected: tuple[str, str]
) -> None:
    assert health("Pipeline", pipeline(session, enabled)) == expected


def test_pipeline_waits_for_the_operator() -> None:
    fresh = pipeline()
    del fresh["status"]
    assert health("Pipeline", fresh) == ("Progressing", "Waiting for the orchest operator")
    stale = pipeline(lastRun="r-1")
    stale["metadata"]["generation"] = 3
    assert health("Pipeline", stale)[0] == "Progressing"


def test_the_patch_is_an_argocd_cm_configmap_with_only_health_keys() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    assert set(patch["data"]) == {
        KEY.format("Pipeline"),
        KEY.format("PipelineRun"),
        KEY.format("PipelineJob"),
    }


def test_application_installs_the_chart_into_orchest_system() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["kind"] == "Application"
    assert (ROOT / app["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "orchest-system"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def job(generation: int = 1, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "metadata": {"name": "nightly", "generation": generation},
        "spec": {"pipelineRef": {"name": "p"}, "schedule": "@daily"},
    }
    if status:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, ("Progressing", "Waiting for the orchest operator")),
        (
            {"activeRuns": 3, "lastBatch": "20260101-000000"},
            ("Progressing", "3 run(s) active, batch 20260101-000000"),
        ),
        (
            {"activeRuns": 0, "lastBatch": "b1", "lastBatchPhase": "Failed"},
            ("Degraded", "Last batch b1 failed"),
        ),
        (
            {"activeRuns": 0, "lastBatchPhase": "Succeeded", "nextScheduleTime": "2026-01-02T00:00:00Z"},
            ("Healthy", "Next tick at 2026-01-02T00:00:00Z"),
        ),
        ({"activeRuns": 0}, ("Healthy", "Idle")),
        (
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "InvalidSchedule",
                        "message": "spec.schedule: x",
                    }
                ]
            },
            ("Degraded", "InvalidSchedule: spec.schedule: x"),
        ),
    ],
)
def test_job_health(status: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("PipelineJob", job(**status)) == expected


def test_job_waits_for_the_operator_to_see_an_edit() -> None:
    assert health("PipelineJob", job(generation=2, activeRuns=0))[0] == "Progressing"


def test_suspended_job_is_healthy() -> None:
    obj = job(activeRuns=0, lastBatchPhase="Succeeded")
    obj["spec"]["suspend"] = True
    assert health("PipelineJob", obj) == ("Healthy", "Suspended")
