"""PipelineJobs: every event of a job, and every change of phase of one of its runs, pokes the job's
reconciler (``orchest_operator.jobs``). A job's first event after the operator starts is its listing, so
a restarted operator looks at every job once and each then wakes itself at its next tick."""

from __future__ import annotations

from typing import Any

import kopf

from orchest_operator.handlers.startup import job_controller
from orchest_operator.jobs.reconcile import LABEL_JOB


@kopf.on.event("orchest.io", "v1alpha1", "pipelinejobs")
async def job_event(namespace: str, name: str, type: str | None, **_: Any) -> None:
    if type == "DELETED":
        job_controller().forget(namespace, name)
    else:
        job_controller().poke(namespace, name)


@kopf.on.event("orchest.io", "v1alpha1", "pipelineruns", labels={LABEL_JOB: kopf.PRESENT})
async def job_run_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    job_controller().run_seen(body, deleted=type == "DELETED")
