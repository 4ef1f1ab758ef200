"""The short pod of ``orchest plan --cluster``: the planner in the step runner's image, with the
pipeline's volume mounted where steps see it, and no service account token (it only reads files)."""

from __future__ import annotations

import json
from typing import Any

from orchest_operator.builders.common import (
    managed_labels,
    restricted_container_security,
    restricted_pod_security,
)
from orchest_operator.builders.job import PROJECT_VOLUME, SCRATCH_VOLUME
from orchest_operator.models import PipelineRunSpec, PipelineSpec

PLAN_DEADLINE_SECONDS = 600
LABEL_PLAN = "orchest.io/plan"


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
    if spec.volume is None:
        raise ValueError("a cluster plan needs spec.volume")
    mount: dict[str, Any] = {"name": PROJECT_VOLUME, "mountPath": spec.volume.mount_path, "readOnly": True}
    if spec.volume.sub_path:
        mount["subPath"] = spec.volume.sub_path
    handed = {"spec": spec.wire(), "request": request.wire(), "defaultImage": default_image}
    container = {
        "name": "plan",
        "image": image,
        "command": ["python", "-m", "orchest_operator.cli.plan_pod"],
        "workingDir": spec.volume.mount_path,
        "env": [{"name": "ORCHEST_PLAN", "value": json.dumps(handed)}, {"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [mount, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}],
        "securityContext": restricted_container_security(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": managed_labels(**{LABEL_PLAN: request.pipeline_ref.name}),
        },
        "spec": {
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
        },
    }
