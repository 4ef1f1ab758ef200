"""A tiny kopf operator that proves the harness: a labelled ConfigMap gets a Job, and its result back.

Only ConfigMaps labelled ``harness.orchest.io/demo=yes`` are handled, and the operator fixture gives each
operator a registry with its own module's handlers only, so this never interferes with orchest's tests.
The handlers are synchronous (kopf runs them in a thread), which is where the official client belongs.
"""

from __future__ import annotations

import threading
from typing import Any

import kopf
import kubernetes

LABEL = "harness.orchest.io/demo"
RESULT = "harness.orchest.io/job-result"
SELECTED = {LABEL: "yes"}

_lock = threading.Lock()
calls: dict[str, int] = {"create": 0, "delete": 0}
"""How often each handler ran in this process, so a test can prove that a restart re-ran nothing."""


def _count(handler: str) -> None:
    with _lock:
        calls[handler] += 1


def job_for(name: str, data: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": int(data.get("backoffLimit", "0")),
        "template": {
            "metadata": {"labels": {LABEL: "yes", "harness.orchest.io/owner": name}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", data.get("run", "true")]}
                ],
            },
        },
    }
    if "activeDeadlineSeconds" in data:
        spec["activeDeadlineSeconds"] = int(data["activeDeadlineSeconds"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-job", "labels": {LABEL: "yes"}},
        "spec": spec,
    }


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kubernetes>=35 builds its pydantic models on first use of an API class (~0.7 s each): pay it here,
    # not inside the first handler, whose latency the tests measure.
    kubernetes.client.BatchV1Api, kubernetes.client.CoreV1Api  # noqa: B018
    settings.posting.loggers = True  # post handler results as Events: exercises generateName on v1/events
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 10


@kopf.on.create("v1", "configmaps", labels=SELECTED)
def create_job(name: str, namespace: str, body: kopf.Body, **_: Any) -> dict[str, str]:
    _count("create")
    job = job_for(name, dict(body.get("data") or {}))
    kopf.adopt(job, owner=body)
    try:
        kubernetes.client.BatchV1Api().create_namespaced_job(namespace, job)
    except kubernetes.client.ApiException as error:
        if error.status != 409:  # 409: created before a restart; it is ours already
            raise
    return {"job": job["metadata"]["name"]}


@kopf.on.event("batch", "v1", "jobs", labels=SELECTED)
def report_job(body: kopf.Body, namespace: str, **_: Any) -> None:
    """Copy the Job's terminal condition onto its owner ConfigMap."""
    done = [
        c["type"]
        for c in (body.get("status") or {}).get("conditions") or []
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
    ]
    owners = [
        ref["name"] for ref in body.get("metadata", {}).get("ownerReferences") or [] if ref.get("controller")
    ]
    if done and owners:
        patch = {"metadata": {"annotations": {RESULT: done[0]}}}
        try:
            kubernetes.client.CoreV1Api().patch_namespaced_config_map(owners[0], namespace, patch)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise


@kopf.on.delete("v1", "configmaps", labels=SELECTED)
def forget(**_: Any) -> None:
    """Exists so kopf puts its finalizer on the ConfigMaps (and removes it when this ran)."""
    _count("delete")
