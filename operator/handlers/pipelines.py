"""Pipelines: keep ``status.stepCount`` (the Steps printer column) in line with the spec, and let a changed
Pipeline (a new concurrency policy or history limit) take effect on its queue and history at once."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from orchest_operator import kube
from orchest_operator.handlers.startup import controller


@kopf.on.event("orchest.io", "v1alpha1", "pipelines")
async def pipeline_event(namespace: str, name: str, type: str | None, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        return
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"].get("generation"):
        controller().sync_pipeline(namespace, name)
    count = len((body.get("spec") or {}).get("steps") or [])
    if status.get("stepCount") != count:
        await asyncio.to_thread(
            kube.patch_status, kube.client(), kube.Pipeline, namespace, name, {"stepCount": count}
        )
