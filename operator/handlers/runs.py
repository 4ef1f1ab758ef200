"""PipelineRuns, their Jobs and their pods: every event pokes the run's reconciler.

Indexes hold small views of the Jobs and pods (kopf fills them before any handler runs, so a restarted
operator sees every Job it created before), and ``on.event`` handlers react without the delay kopf puts
on change handlers. All decisions are in ``orchest_operator.runs``.
"""

from __future__ import annotations

from typing import Any

import kopf

from orchest_operator import naming
from orchest_operator.handlers.startup import controller, job_controller
from orchest_operator.observe import JobView, PodView
from orchest_operator.run_controller import RunController, index_key

OURS = {naming.LABEL_RUN: kopf.PRESENT}


# Every handler here is async: kopf runs a sync handler in its thread pool, behind an ``asyncio.shield``
# task, and each Job and pod event calls two of them (its index and its event handler), each a few dict
# reads. Nothing here may block the event loop.
@kopf.index("batch", "v1", "jobs", labels=OURS)
async def run_jobs(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, JobView]:
    key = index_key(namespace, body)
    return {key: JobView.of(body)} if key else {}


@kopf.index("", "v1", "pods", labels=OURS)
async def run_pods(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, PodView]:
    key = index_key(namespace, body)
    return {key: PodView.of(body)} if key else {}


def _bound(run_jobs: kopf.Index[Any, JobView], run_pods: kopf.Index[Any, PodView]) -> RunController:
    """The shared controller, reading the live indexes kopf hands to every handler."""
    ctl = controller()
    ctl.jobs = lambda key: run_jobs.get(key, ())
    ctl.pods = lambda key: run_pods.get(key, ())
    return ctl


@kopf.on.event("orchest.io", "v1alpha1", "pipelineruns")
async def run_event(
    namespace: str, name: str, type: str | None, body: kopf.Body, run_jobs: Any, run_pods: Any, **_: Any
) -> None:
    ctl = _bound(run_jobs, run_pods)
    if type == "DELETED":
        ctl.run_deleted(namespace, name, body["spec"]["pipelineRef"]["name"])
    else:
        ctl.run_seen(body)
    if naming.LABEL_JOB in (body["metadata"].get("labels") or {}):
        job_controller().run_seen(body, deleted=type == "DELETED")


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_event(
    namespace: str, name: str, type: str | None, body: kopf.Body, run_jobs: Any, run_pods: Any, **_: Any
) -> None:
    ctl = _bound(run_jobs, run_pods)
    if type == "DELETED":
        ctl.job_deleted(namespace, name, body)
        return
    key = index_key(namespace, body)
    if key:
        ctl.poke(*key)


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_event(namespace: str, body: kopf.Body, run_jobs: Any, run_pods: Any, **_: Any) -> None:
    key = index_key(namespace, body)
    if key:
        _bound(run_jobs, run_pods).poke(*key)
