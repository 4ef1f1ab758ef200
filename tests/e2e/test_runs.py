"""The PipelineRun scenarios of the kmock suite, against a real control plane and kubelet."""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Any

from orchest_operator.naming import job_name
from tests.e2e.conftest import Orchest, wait

OK = "import os, json; print(os.environ['ORCHEST_STEP'], json.loads(os.environ['ORCHEST_PARAMETERS']))\n"
FAIL = "raise SystemExit('boom')\n"
SLEEP = "import time; time.sleep(30)\n"
DIAMOND = [
    {"name": "a", "file": "ok.py"},
    {"name": "b", "file": "ok.py", "dependsOn": ["a"]},
    {"name": "c", "file": "ok.py", "dependsOn": ["a"]},
    {"name": "d", "file": "ok.py", "dependsOn": ["b", "c"]},
]


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_diamond_runs_in_dag_order(orchest: Orchest, project: Any) -> None:
    claim = project({"ok.py": OK})
    orchest.pipeline("diamond", claim, DIAMOND)
    orchest.run("r", "diamond")
    run = orchest.finished("r")
    steps = run["status"]["steps"]
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert _t(steps["b"]["startTime"]) >= _t(steps["a"]["completionTime"])
    assert _t(steps["d"]["startTime"]) >= max(
        _t(steps["b"]["completionTime"]), _t(steps["c"]["completionTime"])
    )
    assert len(orchest.jobs("r")) == 4


def test_parallelism_and_failure_policies(orchest: Orchest, project: Any) -> None:
    claim = project({"ok.py": OK, "fail.py": FAIL})
    steps = [
        {"name": "bad", "file": "fail.py"},
        {"name": "after-bad", "file": "ok.py", "dependsOn": ["bad"]},
        {"name": "other", "file": "ok.py"},
    ]
    orchest.pipeline("mixed", claim, steps, concurrencyPolicy="Allow")
    orchest.run("fast", "mixed", parallelism=1)
    orchest.run("cont", "mixed", parallelism=1, failurePolicy="Continue")
    fast, cont = orchest.finished("fast"), orchest.finished("cont")
    assert {n: s["phase"] for n, s in fast["status"]["steps"].items()} == {
        "bad": "Failed",
        "after-bad": "Skipped",
        "other": "Skipped",
    }
    assert {n: s["phase"] for n, s in cont["status"]["steps"].items()} == {
        "bad": "Failed",
        "after-bad": "Skipped",
        "other": "Succeeded",
    }


def test_retries_then_failure_and_timeout(orchest: Orchest, project: Any) -> None:
    claim = project({"fail.py": FAIL, "sleep.py": SLEEP})
    orchest.pipeline(
        "retry", claim, [{"name": "flaky", "file": "fail.py", "retries": 1}], concurrencyPolicy="Allow"
    )
    orchest.pipeline("slow", claim, [{"name": "sleepy", "file": "sleep.py"}], concurrencyPolicy="Allow")
    orchest.run("retry", "retry")
    orchest.run("slow", "slow", timeoutSeconds=5)
    retry = orchest.finished("retry")
    assert retry["status"]["steps"]["flaky"]["attempts"] == 2
    slow = orchest.finished("slow", timeout=120)
    assert slow["status"]["conditions"][0]["reason"] == "Timeout"
    wait(lambda: not orchest.jobs("slow"), 60)


def test_missing_pipeline(orchest: Orchest) -> None:
    orchest.run("lost", "does-not-exist")
    run = orchest.finished("lost", timeout=60)
    assert run["status"]["conditions"][0]["reason"] == "PipelineNotFound"


def test_operator_restart_mid_run_creates_no_duplicate_jobs(orchest: Orchest, project: Any) -> None:
    claim = project({"ok.py": OK, "sleep.py": "import time; time.sleep(5)\n"})
    chain = [{"name": f"s{i}", "file": "sleep.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(4)]
    orchest.pipeline("chain", claim, chain)
    orchest.run("r", "chain")
    wait(lambda: orchest.jobs("r"), 60)
    subprocess.run(
        ["kubectl", "-n", "orchest-system", "delete", "pod", "-l", "app.kubernetes.io/name=orchest"],
        check=True,
    )
    run = orchest.finished("r")
    assert run["status"]["phase"] == "Succeeded"
    assert sorted(j.metadata.name for j in orchest.jobs("r")) == sorted(
        job_name("r", f"s{i}") for i in range(4)
    )


def test_deleting_a_run_deletes_its_jobs(orchest: Orchest, project: Any) -> None:
    claim = project({"sleep.py": SLEEP})
    orchest.pipeline("gc", claim, [{"name": "sleepy", "file": "sleep.py"}])
    orchest.run("r", "gc")
    wait(lambda: orchest.jobs("r"), 60)
    orchest.custom.delete_namespaced_custom_object(
        "orchest.io", "v1alpha1", orchest.namespace, "pipelineruns", "r", propagation_policy="Foreground"
    )
    wait(lambda: not orchest.jobs("r"), 120)


def test_steps_that_cannot_start_say_why(orchest: Orchest, project: Any) -> None:
    """On a real scheduler and kubelet: a GPU no node has waits as Unschedulable and fails at the pending
    timeout with that reason; an image name that cannot be parsed fails at once."""
    claim = project({"ok.py": OK})
    gpu = {"name": "gpu", "file": "ok.py", "resources": {"limits": {"nvidia.com/gpu": 1}}}
    orchest.pipeline("gpu", claim, [gpu], concurrencyPolicy="Allow")
    orchest.pipeline("typo", claim, [{"name": "typo", "file": "ok.py", "image": "Invalid/Image:latest"}])
    orchest.run("gpu", "gpu", pendingTimeoutSeconds=40)
    orchest.run("typo", "typo")

    def waiting() -> dict[str, Any] | None:
        step = (orchest.get_run("gpu").get("status") or {}).get("steps", {}).get("gpu") or {}
        return step if step.get("reason") == "Unschedulable" else None

    step = wait(waiting, 30)
    assert step["phase"] == "Running" and "nvidia.com/gpu" in step["message"]
    typo = orchest.finished("typo", timeout=60)["status"]["steps"]["typo"]
    assert (typo["phase"], typo["reason"]) == ("Failed", "InvalidImageName")
    gpu_run = orchest.finished("gpu", timeout=120)
    failed = gpu_run["status"]["steps"]["gpu"]
    assert failed["reason"] == "Unschedulable"
    assert failed["message"].startswith("did not start running within 40s: Unschedulable: ")
    wait(lambda: not orchest.jobs("gpu"), 60)


def test_a_rerun_is_cached_by_its_planning_pod(orchest: Orchest, project: Any) -> None:
    claim = project({"ok.py": OK})
    orchest.pipeline("cached", claim, DIAMOND, cache=True)
    orchest.run("r1", "cached")
    first = orchest.finished("r1")
    assert first["status"]["phase"] == "Succeeded", first["status"]
    orchest.run("r2", "cached")
    second = orchest.finished("r2")
    steps = second["status"]["steps"]
    assert {(s["phase"], s.get("cachedFrom")) for s in steps.values()} == {("Cached", "r1")}, second["status"]
    assert [j.metadata.name for j in orchest.jobs("r2")] == [job_name("r2", "plan.orchest")]
