"""PipelineJobs: every event of a job pokes the job's reconciler (``orchest_operator.jobs``); a change of
phase of one of its runs does too, from the runs' own event handler (``handlers/runs.py``: one handler per
run event, not two). A job's first event after the operator starts is its listing, so a restarted
operator looks at every job once and each then wakes itself at its next tick."""

from __future__ import annotations

from typing import Any

import kopf

from orchest_operator.handlers.startup import job_controller


@kopf.on.event("orchest.io", "v1alpha1", "pipelinejobs")
async def job_event(namespace: str, name: str, type: str | None, **_: Any) -> None:
    if type == "DELETED":
        job_controller().forget(namespace, name)
    else:
        job_controller().poke(namespace, name)
