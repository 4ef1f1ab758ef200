"""Pipelines: keep ``status.stepCount`` (the Steps printer column) in line with the spec."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from orchest_operator import kube


@kopf.on.event("orchest.io", "v1alpha1", "pipelines")
async def pipeline_event(namespace: str, name: str, type: str | None, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        return
    count = len((body.get("spec") or {}).get("steps") or [])
    if (body.get("status") or {}).get("stepCount") != count:
        await asyncio.to_thread(
            kube.patch_status, kube.client(), kube.Pipeline, namespace, name, {"stepCount": count}
        )
