"""Carries out the PipelineJob reconciler's decisions against the API.

A pass reads the job with a GET and its runs with a LIST (both answered from etcd, not a watch that may lag),
so a restarted operator, or one that lost its watch, decides from what exists: that, and the runs'
deterministic names, is what makes a tick run exactly once. Passes are coalesced per job; a job wakes
itself at its next tick (and at least every few minutes, so a clock step or a missed timer costs minutes,
not a tick). The status patch names the resourceVersion the pass read, so a pass that raced an edit (a
trigger, a suspend) is done again from the job as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pykube
import requests

from orchest_operator import kube, naming
from orchest_operator.coalesce import Coalescer
from orchest_operator.jobs.reconcile import JobActions, JobInputs, Reason, reconcile
from orchest_operator.naming import LABEL_JOB
from orchest_operator.run_controller import merge_patch
from orchest_operator.runs import Event

JobKey = tuple[str, str]  # (namespace, job name)
MAX_SLEEP_SECONDS = 300.0
"""The longest a job sleeps without a pass, whatever its schedule."""
WAKE_MARGIN_SECONDS = 0.05
"""Timers may fire a little early; waking just after the tick makes it due at the first try."""
FOREIGN_RETRY_SECONDS = 2.0
ACTION_REASONS = frozenset({Reason.BATCH_CREATED, Reason.REPLACED})


@dataclass
class JobController:
    api: pykube.HTTPClient
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _jobs: Coalescer[JobKey] = field(init=False)
    _phases: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """Each job run's last seen phase: only a run's phase changes what its job shows."""

    def __post_init__(self) -> None:
        self._jobs = Coalescer(self._reconcile, "job reconcile")

    def poke(self, namespace: str, name: str) -> None:
        self._jobs.poke((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        self._jobs.forget((namespace, name))

    def run_seen(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        """A run of a job changed: its job needs a pass when the run came, went, or changed phase."""
        meta = body["metadata"]
        job = next(
            (r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == "PipelineJob"), None
        )
        if job is None:
            return
        key = (meta["namespace"], meta["name"])
        phase = (body.get("status") or {}).get("phase")
        if deleted:
            self._phases.pop(key, None)
        elif key in self._phases and self._phases[key] == phase:
            return
        else:
            self._phases[key] = phase
        self.poke(meta["namespace"], job)

    async def close(self) -> None:
        await self._jobs.close()

    async def _reconcile(self, key: JobKey, _poked: float | None) -> None:
        namespace, name = key
        job = await asyncio.to_thread(kube.get, self.api, kube.PipelineJob, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            self._jobs.forget(key)
            return
        selector = {LABEL_JOB: naming.label_value(name)}
        runs = await asyncio.to_thread(kube.list_objects, self.api, kube.PipelineRun, namespace, selector)
        now = self.clock()
        actions = reconcile(JobInputs(job=job, runs=runs, now=now))
        if not await self._apply(job, key, actions):
            return
        if actions.wake_at is not None:
            delay = min((actions.wake_at - now).total_seconds(), MAX_SLEEP_SECONDS)
            self._jobs.poke_later(key, delay + WAKE_MARGIN_SECONDS)
        else:
            self._jobs.cancel_wakeup(key)

    async def _apply(self, job: dict[str, Any], key: JobKey, actions: JobActions) -> bool:
        namespace, name = key
        # A replaced batch is cancelled before its successor exists, as a CronJob's Replace does.
        for run in actions.cancel:
            await asyncio.to_thread(
                kube.patch, self.api, kube.PipelineRun, namespace, run, {"spec": {"cancel": True}}
            )
        blocked = False
        for manifest in actions.create:
            try:
                await asyncio.to_thread(kube.ensure, self.api, manifest)
            except kube.ForeignObject:
                # An earlier job of this name still holds the run's name until the garbage collector
                # removes it: try again shortly, never adopt it.
                blocked = True
        for run in actions.delete:
            await asyncio.to_thread(kube.delete, self.api, kube.PipelineRun, namespace, run)
        # Events of what was just done are posted now: a pass repeated after a failed status write finds
        # nothing left to do and posts none. Events about ticks wait for the status that records them.
        done, told = [], []
        for event in actions.events:
            (done if event.reason in ACTION_REASONS else told).append(event)
        self._post(job, done)
        if blocked:
            self._jobs.poke_later(key, FOREIGN_RETRY_SECONDS)
            return False
        current = job.get("status") or {}
        if actions.status != current:
            try:
                await asyncio.to_thread(
                    kube.patch_status,
                    self.api,
                    kube.PipelineJob,
                    namespace,
                    name,
                    merge_patch(current, actions.status),
                    resource_version=job["metadata"].get("resourceVersion"),
                )
            except (pykube.exceptions.HTTPError, requests.HTTPError) as err:
                if kube.status_code(err) not in (404, 409):
                    raise
                self.poke(namespace, name)  # the job changed since it was read: decide again
                return False
        self._post(job, told)
        return True

    @staticmethod
    def _post(job: dict[str, Any], events: list[Event]) -> None:
        for event in events:
            kopf.event(job, type=event.type, reason=event.reason, message=event.message)
