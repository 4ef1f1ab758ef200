"""The planning pods: the short pod of ``orchest plan --cluster`` and the Job that plans a run before its
steps start (``cache.runplan``). Both run the planner in the step runner's image with the pipeline's
volume mounted read-only where steps see it, and no service account token (they only read files)."""

from __future__ import annotations

import json
from typing import Any

from orchest_operator import naming
from orchest_operator.builders.common import (
    managed_labels,
    restricted_container_security,
    restricted_pod_security,
)
from orchest_operator.builders.job import PROJECT_VOLUME, SCRATCH_VOLUME, JobOptions, run_job, step_labels
from orchest_operator.cache.handoff import HANDOFF_LIMIT
from orchest_operator.cache.runplan import PLAN_STEP
from orchest_operator.models import PipelineRunSpec, PipelineSpec

PLAN_DEADLINE_SECONDS = 300
LABEL_PLAN = "orchest.io/plan"


def _pod_spec(
    spec: PipelineSpec,
    request: PipelineRunSpec,
    image: str,
    default_image: str,
    run_as_user: int,
    *args: str,
    selected: list[str] | None = None,
) -> dict[str, Any] | None:
    if spec.volume is None:
        raise ValueError("a cluster plan needs spec.volume")
    mount: dict[str, Any] = {"name": PROJECT_VOLUME, "mountPath": spec.volume.mount_path, "readOnly": True}
    if spec.volume.sub_path:
        mount["subPath"] = spec.volume.sub_path
    handoff: dict[str, Any] = {"spec": spec.wire(), "request": request.wire(), "defaultImage": default_image}
    if selected is not None:
        handoff["selected"] = selected
    handed = json.dumps(handoff)
    if len(handed) > HANDOFF_LIMIT:
        return None
    container = {
        "name": "plan",
        "image": image,
        "command": ["python", "-m", "orchest_operator.cli.plan_pod", *args],
        "workingDir": spec.volume.mount_path,
        "env": [{"name": "ORCHEST_PLAN", "value": handed}, {"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [mount, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}],
        "securityContext": restricted_container_security(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    return {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": PLAN_DEADLINE_SECONDS,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(run_as_user),
        "containers": [container],
        "volumes": [
            {"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": spec.volume.claim_name}},
            {"name": SCRATCH_VOLUME, "emptyDir": {}},
        ],
    }


def plan_pod(
    *,
    name: str,
    namespace: str,
    spec: PipelineSpec,
    request: PipelineRunSpec,
    image: str,
    default_image: str,
    run_as_user: int = 1000,
) -> dict[str, Any]:
    """The pod of ``orchest plan --cluster``: it prints the plan as JSON in its log."""
    pod_spec = _pod_spec(spec, request, image, default_image, run_as_user)
    if pod_spec is None:
        raise ValueError(f"the pipeline is too large to hand to a pod (over {HANDOFF_LIMIT} bytes)")
    labels = managed_labels(**{LABEL_PLAN: naming.label_value(request.pipeline_ref.name)})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": pod_spec,
    }


def plan_job(
    *,
    run: dict[str, Any],
    spec: PipelineSpec,
    request: PipelineRunSpec,
    options: JobOptions,
    selected: list[str] | None = None,
) -> dict[str, Any] | None:
    """The Job that plans ``run`` before its steps start; it leaves the steps found in the cache in its
    termination message, by their position in ``selected`` (the run's snapshot: a rerun's differs from
    what its selection gives). None when the pipeline is too large to hand over: the steps then ask the
    cache in their own pods."""
    pod_spec = _pod_spec(
        spec,
        request,
        options.default_image,
        options.default_image,
        options.run_as_user,
        "--termination-message",
        selected=selected,
    )
    if pod_spec is None:
        return None
    run_name = run["metadata"]["name"]
    labels = step_labels(request.pipeline_ref.name, run_name, PLAN_STEP)
    annotations = {naming.ANNOTATION_RUN: run_name}
    # The deadline counts from the Job's start, a pod that cannot be scheduled included: the steps wait
    # for this Job, and a planning pod that never runs must not hold them longer.
    return run_job(run, PLAN_STEP, labels, annotations, pod_spec, retries=0, deadline=PLAN_DEADLINE_SECONDS)
