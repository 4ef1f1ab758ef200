"""PipelineJobs on a real control plane and kubelet: a sweep in isolated workspaces, and a schedule whose
ticks each run once across a restart of the operator."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from tests.e2e.conftest import Orchest, wait

WRITE = (
    "import json, os\n"
    "p = json.loads(os.environ['ORCHEST_PARAMETERS'])\n"
    "open('seen.json', 'w').write(json.dumps(p))\n"
    "assert os.getcwd().endswith('/workspace'), os.getcwd()\n"
)
OPERATOR_NAMESPACE = "orchest-system"
OPERATOR_PODS = "app.kubernetes.io/name=orchest,app.kubernetes.io/component=operator"


def create_job(orchest: Orchest, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "metadata": {"name": name},
        "spec": spec,
    }
    orchest.custom.create_namespaced_custom_object(
        "orchest.io", "v1alpha1", orchest.namespace, "pipelinejobs", body
    )


def get_job(orchest: Orchest, name: str) -> dict[str, Any]:
    return orchest.custom.get_namespaced_custom_object(
        "orchest.io", "v1alpha1", orchest.namespace, "pipelinejobs", name
    )


def job_runs(orchest: Orchest, name: str) -> list[dict[str, Any]]:
    found = orchest.custom.list_namespaced_custom_object(
        "orchest.io",
        "v1alpha1",
        orchest.namespace,
        "pipelineruns",
        label_selector=f"orchest.io/pipeline-job={name}",
    )
    return found["items"]


def test_a_sweep_runs_each_combination_in_its_own_workspace(orchest: Orchest, project: Any) -> None:
    claim = project({"write.py": WRITE})
    orchest.pipeline("sweep", claim, [{"name": "write", "file": "write.py"}])  # concurrencyPolicy: Queue
    create_job(orchest, "sweep", pipelineRef={"name": "sweep"}, matrix={"alpha": [0.1, 0.2], "seed": [1, 2]})
    wait(
        lambda: (
            (get_job(orchest, "sweep").get("status") or {}).get("lastBatchPhase") in ("Succeeded", "Failed")
        ),
        600,
    )
    status = get_job(orchest, "sweep")["status"]
    assert status["lastBatchPhase"] == "Succeeded", status
    runs = job_runs(orchest, "sweep")
    assert len(runs) == 4
    for run in runs:
        assert run["status"]["workspace"]["phase"] == "Succeeded"
        assert run["spec"]["workspace"] == "Isolated"
    # isolated runs are not queued behind each other although the Pipeline queues its runs: the second
    # run to start did so before the first one to finish had finished
    starts = sorted(run["status"]["startTime"] for run in runs)
    ends = sorted(run["status"]["completionTime"] for run in runs)
    assert starts[1] < ends[0], (starts, ends)


def test_each_tick_runs_once_across_an_operator_restart(kube: Any, orchest: Orchest, project: Any) -> None:
    claim = project({"write.py": "print('tick')\n"})
    orchest.pipeline("ticking", claim, [{"name": "tick", "file": "write.py"}], concurrencyPolicy="Allow")
    create_job(
        orchest,
        "ticking",
        pipelineRef={"name": "ticking"},
        schedule="@every 20s",
        startingDeadlineSeconds=15,
        runTemplate={"workspace": "Shared"},
    )
    wait(lambda: len(job_runs(orchest, "ticking")) >= 2, 120)
    core = kube.CoreV1Api()
    for pod in core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=OPERATOR_PODS).items:
        core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NAMESPACE)
    wait(lambda: len(job_runs(orchest, "ticking")) >= 5, 240)
    orchest.custom.patch_namespaced_custom_object(
        "orchest.io", "v1alpha1", orchest.namespace, "pipelinejobs", "ticking", {"spec": {"suspend": True}}
    )
    ticks = [r["metadata"]["annotations"]["orchest.io/scheduled-time"] for r in job_runs(orchest, "ticking")]
    assert max(Counter(ticks).values()) == 1, f"a tick ran twice: {sorted(ticks)}"
    seconds = [int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()) for t in ticks]
    assert all(s % 20 == 0 for s in seconds), "every run is for a tick of the schedule"
