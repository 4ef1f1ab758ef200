"""The pipelines, runs and bare Jobs the benchmarks create.

Baseline Jobs are built by the operator's own Job builder and then stripped of everything that ties them
to orchest (labels, run annotation, owner), so a baseline pod is the very pod the operator would run and
only the scheduling around it differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchest_operator.builders.job import JobOptions, step_job
from orchest_operator.models import API_VERSION, PipelineSpec

PIPELINES = "orchest.io/v1alpha1/pipelines"
RUNS = "orchest.io/v1alpha1/pipelineruns"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"
BASELINE_LABEL = "orchest-bench/baseline"
CLAIM = "bench-project"
HISTORY = 1000  # the most runs a Pipeline keeps: no run is pruned while a benchmark reads it

Step = dict[str, Any]


def step_file(seconds: float) -> str:
    """The script a step runs on a real cluster: it sleeps ``seconds`` (the file is seeded by the bench)."""
    return f"sleep-{round(seconds * 1000)}ms.py"


def chain(n: int, file: str) -> list[Step]:
    return [{"name": f"s{i}", "file": file, **({"dependsOn": [f"s{i - 1}"]} if i else {})} for i in range(n)]


def fan_out(m: int, file: str) -> list[Step]:
    return [{"name": "root", "file": file}] + [
        {"name": f"l{i}", "file": file, "dependsOn": ["root"]} for i in range(m)
    ]


def wide(n: int, file: str) -> list[Step]:
    return [{"name": f"w{i}", "file": file} for i in range(n)]


def diamondish(file: str) -> list[Step]:
    """Ten steps in six levels: one → three → one → three → one → one."""
    needs = {
        "a": [],
        "b1": ["a"],
        "b2": ["a"],
        "b3": ["a"],
        "c": ["b1", "b2", "b3"],
        "d1": ["c"],
        "d2": ["c"],
        "d3": ["c"],
        "e": ["d1", "d2", "d3"],
        "f": ["e"],
    }
    return [{"name": n, "file": file, **({"dependsOn": d} if d else {})} for n, d in needs.items()]


def pipeline(name: str, namespace: str, steps: Sequence[Step], image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": image,
            "volume": {"claimName": CLAIM},
            "steps": list(steps),
            "concurrencyPolicy": "Allow",
            "runHistoryLimit": HISTORY,
            **spec,
        },
    }


def run(name: str, namespace: str, pipeline_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"pipelineRef": {"name": pipeline_name}, **spec},
    }


def bare_job(name: str, namespace: str, tag: str, file: str, image: str) -> dict[str, Any]:
    """A Job with the pod an orchest step would have, owned by nothing and invisible to the operator.

    The PriorityClass is left out: the benchmark cannot know whether the cluster has orchest's.
    """
    owner = {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"name": tag, "namespace": namespace, "uid": "-"},
        "spec": {"pipelineRef": {"name": tag}},
    }
    spec = PipelineSpec.model_validate(
        {"image": image, "volume": {"claimName": CLAIM}, "steps": [{"name": "step", "file": file}]}
    )
    manifest = step_job(
        run=owner,
        spec=spec,
        step_name="step",
        parameters={},
        priority="Background",
        options=JobOptions(default_image=image, priority_classes=False),
    )
    labels = {BASELINE_LABEL: tag}
    manifest["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
    manifest["spec"]["template"]["metadata"] = {"labels": labels}
    return manifest
