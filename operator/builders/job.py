"""The Kubernetes Job that runs one step of a PipelineRun.

One Job per step, one pod per attempt: the Job controller owns retries (``backoffLimit``) and the step
timeout (``activeDeadlineSeconds``); the container runs ``orchest step``, the same executor as
``orchest run`` uses locally. A step's timeout counts from when its pod runs, not while it waits for a
node or an image: the Job is created with the timeout plus the pending timeout (so it ends even when the
operator is away), and the operator shortens it once it sees the pod run (``runs._observe``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from orchest_operator import naming
from orchest_operator.builders.common import (
    managed_labels,
    owner_reference,
    restricted_container_security,
    restricted_pod_security,
)
from orchest_operator.cache.handoff import ENV_CACHE, HANDOFF_LIMIT, handoff
from orchest_operator.models import PipelineSpec, Priority
from orchest_operator.workspace import workspace_of

WORKSPACE_STEP = "orchest.workspace"
"""The step label of an isolated run's workspace Job: the dot keeps it apart from every step name."""
PROJECT_VOLUME = "project"
SCRATCH_VOLUME = "scratch"
PRIORITY_CLASSES = {Priority.INTERACTIVE: "orchest-interactive", Priority.BACKGROUND: "orchest-background"}


@dataclass(frozen=True)
class JobOptions:
    """Cluster-wide knobs the operator's settings provide."""

    default_image: str
    priority_classes: bool = True
    run_as_user: int = 1000


def step_labels(pipeline: str, run: str, step: str) -> dict[str, str]:
    return managed_labels(
        **{
            naming.LABEL_PIPELINE: naming.label_value(pipeline),
            naming.LABEL_RUN: naming.label_value(run),
            naming.LABEL_STEP: step,
        }
    )


def step_job(
    *,
    run: dict[str, Any],
    spec: PipelineSpec,
    step_name: str,
    parameters: dict[str, Any],
    priority: Priority | str,
    options: JobOptions,
    use_cache: bool = True,
    isolated: bool = False,
    pending_timeout_seconds: int = 0,
) -> dict[str, Any]:
    """The Job manifest for ``step_name`` of ``run`` (a PipelineRun object with uid). An ``isolated`` run's
    steps work in its workspace; their executed notebooks still go to ``.orchest/runs/<run>``. A step that
    caches gets the recipes of its key in ``$ORCHEST_CACHE`` (never in an isolated run: the cache's index
    and outputs are in the pipeline's directory); ``use_cache`` False (the run's ``spec.cache``) makes it
    run whatever the cache holds."""
    if spec.volume is None:
        raise ValueError("a cluster run needs spec.volume")
    step = spec.step(step_name)
    run_name = run["metadata"]["name"]
    mount_path = spec.volume.mount_path
    isolation = (
        ["--output-dir", str(PurePosixPath(mount_path, ".orchest", "runs", run_name))] if isolated else []
    )
    pipeline_name = run["spec"]["pipelineRef"]["name"]
    labels = step_labels(pipeline_name, run_name, step.name)
    annotations = {naming.ANNOTATION_RUN: run_name}
    env = [
        {"name": "ORCHEST_PARAMETERS", "value": json.dumps(spec.parameters_for(step, parameters))},
        {"name": "ORCHEST_STEP", "value": step.name},
        {"name": "ORCHEST_RUN", "value": run_name},
        {"name": "ORCHEST_PIPELINE", "value": pipeline_name},
        # Jupyter and pip write below HOME; the root filesystem is read-only.
        {"name": "HOME", "value": "/tmp"},
    ] + [{"name": e.name, "value": e.value} for e in spec.env_for(step)]
    image = step.image or spec.image or options.default_image
    cache = (
        None
        if isolated
        else handoff(
            spec,
            step.name,
            pipeline=pipeline_name,
            overrides=parameters,
            default_image=options.default_image,
            lookup=use_cache,
        )
    )
    handed = cache.wire() if cache is not None else ""
    if handed and len(handed) <= HANDOFF_LIMIT:
        env.append({"name": ENV_CACHE, "value": handed})
    mount = {"name": PROJECT_VOLUME, "mountPath": spec.volume.mount_path}
    if spec.volume.sub_path:
        mount["subPath"] = spec.volume.sub_path
    resources = step.resources or spec.resources
    container: dict[str, Any] = {
        "name": "step",
        "image": image,
        # The module, not the ``orchest`` script: it skips importing kopf and the clients on every step.
        "command": [
            "python",
            "-m",
            "orchest_operator.cli.step",
            "--file",
            step.file,
            "--step",
            step.name,
            "--run",
            run_name,
            *isolation,
        ],
        "workingDir": str(workspace_of(PurePosixPath(mount_path), run_name)) if isolated else mount_path,
        "env": env,
        "volumeMounts": [mount, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}],
        "securityContext": restricted_container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources is not None:
        container["resources"] = resources.wire()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(options.run_as_user),
        "containers": [container],
        "volumes": [
            {"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": spec.volume.claim_name}},
            {"name": SCRATCH_VOLUME, "emptyDir": {}},
        ],
    }
    if options.priority_classes:
        pod_spec["priorityClassName"] = PRIORITY_CLASSES[Priority(priority)]
    deadline = None if step.timeout_seconds is None else step.timeout_seconds + pending_timeout_seconds
    return run_job(run, step.name, labels, annotations, pod_spec, retries=step.retries, deadline=deadline)


def run_job(
    run: dict[str, Any],
    step: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    pod_spec: dict[str, Any],
    *,
    retries: int,
    deadline: int | None = None,
) -> dict[str, Any]:
    """One pod's Job of ``run``, named for ``step`` and owned by the run: the step Jobs, the isolated
    workspace's copy and the cache planner differ only in their pod, retries and deadline."""
    job_spec: dict[str, Any] = {
        "backoffLimit": retries,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
    }
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(run["metadata"]["name"], step),
            "namespace": run["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(run)],
        },
        "spec": job_spec,
    }


def workspace_job(
    *,
    run: dict[str, Any],
    spec: PipelineSpec,
    exclude: list[str],
    priority: Priority | str,
    options: JobOptions,
    from_run: str | None = None,
    deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """The Job that copies the pipeline's directory (for a rerun, the earlier run's workspace) into an
    isolated run's workspace, in the step-runner image, before the run's first step
    (``python -m orchest_operator.workspace``)."""
    if spec.volume is None:
        raise ValueError("a cluster run needs spec.volume")
    run_name = run["metadata"]["name"]
    pipeline_name = run["spec"]["pipelineRef"]["name"]
    labels = step_labels(pipeline_name, run_name, WORKSPACE_STEP)
    annotations = {naming.ANNOTATION_RUN: run_name}
    mount = {"name": PROJECT_VOLUME, "mountPath": spec.volume.mount_path}
    if spec.volume.sub_path:
        mount["subPath"] = spec.volume.sub_path
    command = ["python", "-m", "orchest_operator.workspace", spec.volume.mount_path, run_name]
    for glob in exclude:
        command += ["--exclude", glob]
    if from_run:
        command += ["--from-run", from_run]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(options.run_as_user),
        "containers": [
            {
                "name": "workspace",
                "image": options.default_image,
                "command": command,
                "workingDir": spec.volume.mount_path,
                "env": [{"name": "HOME", "value": "/tmp"}],
                "volumeMounts": [mount, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}],
                "securityContext": restricted_container_security(),
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [
            {"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": spec.volume.claim_name}},
            {"name": SCRATCH_VOLUME, "emptyDir": {}},
        ],
    }
    if options.priority_classes:
        pod_spec["priorityClassName"] = PRIORITY_CLASSES[Priority(priority)]
    deadline = deadline_seconds or None
    return run_job(run, WORKSPACE_STEP, labels, annotations, pod_spec, retries=1, deadline=deadline)
