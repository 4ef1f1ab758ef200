"""The step Job manifest: valid against the Kubernetes schema, restricted, labelled, owned."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from orchest_operator import naming
from orchest_operator.builders.job import JobOptions, step_job
from orchest_operator.models import PipelineSpec

RUN = {
    "apiVersion": "orchest.io/v1alpha1",
    "kind": "PipelineRun",
    "metadata": {"name": "nightly-1", "namespace": "team", "uid": "1234"},
    "spec": {"pipelineRef": {"name": "etl"}},
}
SPEC = PipelineSpec.model_validate(
    {
        "image": "pipeline-image:1",
        "volume": {"claimName": "data", "subPath": "projects/etl", "mountPath": "/work"},
        "parameters": {"rate": 0.5, "n": 1},
        "env": [{"name": "A", "value": "pipeline"}, {"name": "B", "value": "pipeline"}],
        "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1}},
        "steps": [
            {
                "name": "load",
                "file": "load.ipynb",
                "parameters": {"n": 2},
                "retries": 3,
                "timeoutSeconds": 600,
                "env": [{"name": "B", "value": "step"}],
            },
            {
                "name": "train",
                "file": "train.py",
                "image": "gpu:2",
                "dependsOn": ["load"],
                "resources": {"requests": {"memory": "2Gi"}},
            },
        ],
    }
)


def build(step: str = "load", **kw: object) -> dict:
    return step_job(
        run=RUN,
        spec=SPEC,
        step_name=step,
        parameters=kw.pop("parameters", {"rate": 0.7}),  # type: ignore[arg-type]
        priority=kw.pop("priority", "Interactive"),
        options=JobOptions(default_image="runner:1"),
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("step", ["load", "train"])
def test_job_is_valid_kubernetes(step: str) -> None:
    kubernetes_validate.validate(build(step), "1.31.0", strict=True)


def test_job_runs_the_step_with_merged_parameters_env_and_volume() -> None:
    job = build()
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["ORCHEST_PARAMETERS"]) == {"rate": 0.7, "n": 2}
    assert (env["ORCHEST_STEP"], env["ORCHEST_RUN"], env["A"], env["B"]) == (
        "load",
        "nightly-1",
        "pipeline",
        "step",
    )
    assert container["command"] == [
        "python",
        "-m",
        "orchest_operator.cli.step",
        "--file",
        "load.ipynb",
        "--step",
        "load",
        "--run",
        "nightly-1",
    ]
    assert container["workingDir"] == "/work"
    assert {"name": "project", "mountPath": "/work", "subPath": "projects/etl"} in container["volumeMounts"]
    assert {"name": "project", "persistentVolumeClaim": {"claimName": "data"}} in pod["volumes"]
    assert container["image"] == "pipeline-image:1"
    assert container["resources"] == {"limits": {"cpu": "1", "nvidia.com/gpu": 1}}
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert pod["priorityClassName"] == "orchest-interactive"
    assert pod["restartPolicy"] == "Never"


def test_step_image_and_resources_override_pipeline() -> None:
    container = build("train")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "gpu:2"
    assert container["resources"] == {"requests": {"memory": "2Gi"}}
    assert "activeDeadlineSeconds" not in build("train")["spec"]


def test_labels_annotations_and_owner() -> None:
    job = build()
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"][naming.LABEL_RUN] == "nightly-1"
        assert meta["labels"][naming.LABEL_PIPELINE] == "etl"
        assert meta["labels"][naming.LABEL_STEP] == "load"
        assert meta["annotations"][naming.ANNOTATION_RUN] == "nightly-1"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "PipelineRun",
        "nightly-1",
        "1234",
        True,
    )
    assert job["metadata"]["name"] == naming.job_name("nightly-1", "load")
    assert job["metadata"]["name"].startswith("nightly-1-load-")


def test_long_names_are_hashed_within_limits() -> None:
    run = {**RUN, "metadata": {**RUN["metadata"], "name": "r" * 200}}
    job = step_job(
        run=run,
        spec=SPEC,
        step_name="load",
        parameters={},
        priority="Background",
        options=JobOptions(default_image="x", priority_classes=False),
    )
    assert len(job["metadata"]["name"]) <= 63
    assert len(job["metadata"]["labels"][naming.LABEL_RUN]) <= 63
    assert job["metadata"]["annotations"][naming.ANNOTATION_RUN] == "r" * 200
    assert "priorityClassName" not in job["spec"]["template"]["spec"]
    kubernetes_validate.validate(job, "1.31.0", strict=True)


def test_pod_is_restricted() -> None:
    pod = build()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False


def test_pipeline_without_volume_is_refused() -> None:
    spec = SPEC.model_copy(update={"volume": None})
    with pytest.raises(ValueError, match=r"needs spec\.volume"):
        step_job(
            run=RUN,
            spec=spec,
            step_name="load",
            parameters={},
            priority="Background",
            options=JobOptions(default_image="x"),
        )


def test_the_planning_pod_is_valid_restricted_and_reads_the_volume_only() -> None:
    from orchest_operator.builders.plan import plan_pod
    from orchest_operator.models import PipelineRunSpec

    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}, "parameters": {"a": 1}})
    pod = plan_pod(
        name="orchest-plan-1", namespace="ns", spec=SPEC, request=request, image="i", default_image="d"
    )
    kubernetes_validate.validate(pod, "1.31.0", strict=True)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"][0]["readOnly"] is True
    assert container["workingDir"] == SPEC.volume.mount_path  # type: ignore[union-attr]
    from orchest_operator.podsecurity import restricted_violations

    assert restricted_violations(pod) == []


def test_the_runs_planning_job_is_valid_restricted_and_owned() -> None:
    from orchest_operator.builders.plan import HANDOFF_LIMIT, plan_job
    from orchest_operator.models import PipelineRunSpec
    from orchest_operator.podsecurity import restricted_violations

    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}})
    options = JobOptions(default_image="runner:1")
    job = plan_job(run=RUN, spec=SPEC, request=request, options=options)
    assert job is not None
    kubernetes_validate.validate(job, "1.31.0", strict=True)
    assert restricted_violations(job) == []
    assert job["metadata"]["ownerReferences"][0]["uid"] == RUN["metadata"]["uid"]
    assert job["spec"]["backoffLimit"] == 0
    huge = SPEC.model_copy(update={"parameters": {"blob": "x" * HANDOFF_LIMIT}})
    assert plan_job(run=RUN, spec=huge, request=request, options=options) is None
