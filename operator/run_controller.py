"""Carries out the PipelineRun reconciler's decisions against the API.

Every watch event about a run, its Jobs or its pods "pokes" the run. Pokes are coalesced: one worker per
run reconciles while the run is dirty, so a burst of 200 pod events costs a handful of reconciles, not 200,
and with no time-based batching a single event is acted on at once. Runs of one pipeline are admitted
under a per-pipeline lock, so two runs never both pass a ``Queue`` check on stale data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pykube

from orchest_operator import kube, metrics, naming, queue
from orchest_operator.builders.job import JobOptions
from orchest_operator.models import ConcurrencyPolicy, RunPhase
from orchest_operator.observe import JobView, PodView
from orchest_operator.runs import Actions, Inputs, Observed, current_status, parse_time, reconcile

log = logging.getLogger(__name__)

RunKey = tuple[str, str]  # (namespace, run name)
JobSource = Callable[[RunKey], Iterable[JobView]]
PodSource = Callable[[RunKey], Iterable[PodView]]
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
_CREATE_CONCURRENCY = 16


@dataclass
class RunController:
    api: pykube.HTTPClient
    options: JobOptions
    jobs: JobSource
    pods: PodSource
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _dirty: set[RunKey] = field(default_factory=set)
    _workers: dict[RunKey, asyncio.Task[None]] = field(default_factory=dict)
    _poked_at: dict[RunKey, float] = field(default_factory=dict)
    _in_flight: dict[RunKey, set[str]] = field(default_factory=dict)
    _failures: dict[RunKey, int] = field(default_factory=dict)
    _retries: dict[RunKey, asyncio.TimerHandle] = field(default_factory=dict)
    _deadlines: dict[RunKey, asyncio.TimerHandle] = field(default_factory=dict)
    _admission: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def poke(self, namespace: str, name: str) -> None:
        """Mark the run dirty; start its worker unless one is already running."""
        key = (namespace, name)
        self._poked_at.setdefault(key, time.perf_counter())
        self._dirty.add(key)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key), name=f"reconcile {namespace}/{name}")

    def seen_job(self, namespace: str, run: str, job: str) -> None:
        """The Job index has caught up with a Job this process created."""
        self._in_flight.get((namespace, run), set()).discard(job)

    async def close(self) -> None:
        for handle in [*self._retries.values(), *self._deadlines.values()]:
            handle.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _work(self, key: RunKey) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                poked = self._poked_at.pop(key, None)
                try:
                    await self._reconcile(key, poked)
                    self._failures.pop(key, None)
                except Exception as err:  # a failed reconcile is retried, never fatal
                    attempt = self._failures.get(key, 0)
                    self._failures[key] = attempt + 1
                    delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                    log.warning("reconcile of %s/%s failed (%s); retrying in %.0fs", *key, err, delay)
                    self._wake_later(self._retries, key, delay)
        finally:
            self._workers.pop(key, None)

    def _wake_later(self, timers: dict[RunKey, asyncio.TimerHandle], key: RunKey, delay: float) -> None:
        old = timers.pop(key, None)
        if old is not None:
            old.cancel()
        timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), self.poke, *key)

    async def _reconcile(self, key: RunKey, poked: float | None) -> None:
        namespace, name = key
        run = await asyncio.to_thread(kube.get, self.api, kube.PipelineRun, namespace, name)
        if run is None:
            self._forget(key)
            return
        status = current_status(run)
        if status.phase.finished:
            self._forget(key)
            return
        pipeline_name = run["spec"]["pipelineRef"]["name"]
        if status.start_time is None:
            lock = self._admission.setdefault((namespace, pipeline_name), asyncio.Lock())
            async with lock:
                actions = await self._decide(run, key, status.snapshot is None)
                await self._apply(run, key, actions, poked)
        else:
            actions = await self._decide(run, key, False)
            await self._apply(run, key, actions, poked)
        if actions.phase is not status.phase:
            await self._phase_changed(namespace, pipeline_name, actions.phase)
        if actions.phase is RunPhase.RUNNING:
            self._arm_deadline(key, run, actions.status)

    async def _decide(self, run: dict[str, Any], key: RunKey, needs_pipeline: bool) -> Actions:
        namespace = key[0]
        spec = run["spec"]
        pipeline = earlier = None
        if needs_pipeline or not (run.get("status") or {}).get("startTime"):
            pipeline = await asyncio.to_thread(
                kube.get, self.api, kube.Pipeline, namespace, spec["pipelineRef"]["name"]
            )
        if needs_pipeline and spec.get("rerunOf"):
            earlier = await asyncio.to_thread(
                kube.get, self.api, kube.PipelineRun, namespace, spec["rerunOf"]
            )
        admission = queue.Admission()
        if not (run.get("status") or {}).get("startTime"):
            admission = await self._admission_of(run, pipeline)
        return reconcile(
            Inputs(
                run=run,
                pipeline=pipeline,
                observed=Observed(
                    jobs={j.step: j for j in self.jobs(key)},
                    pods=list(self.pods(key)),
                    in_flight=set(self._in_flight.get(key, ())),
                ),
                now=self.clock(),
                options=self.options,
                earlier=earlier,
                waiting_for=admission.waiting_for,
                forbidden_by=admission.forbidden_by,
            )
        )

    async def _admission_of(self, run: dict[str, Any], pipeline: dict[str, Any] | None) -> queue.Admission:
        if pipeline is None:
            return queue.Admission()
        policy = (pipeline.get("spec") or {}).get("concurrencyPolicy", ConcurrencyPolicy.QUEUE)
        if policy == ConcurrencyPolicy.ALLOW:
            return queue.Admission()
        siblings = await self._runs_of(run["metadata"]["namespace"], run["spec"]["pipelineRef"]["name"])
        return queue.admit(queue.RunSummary.of(run), [queue.RunSummary.of(r) for r in siblings], policy)

    async def _runs_of(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        runs = await asyncio.to_thread(kube.list_objects, self.api, kube.PipelineRun, namespace)
        return [r for r in runs if r["spec"]["pipelineRef"]["name"] == pipeline]

    async def _apply(self, run: dict[str, Any], key: RunKey, actions: Actions, poked: float | None) -> None:
        namespace, name = key
        if actions.create:
            in_flight = self._in_flight.setdefault(key, set())
            in_flight.update(m["metadata"]["name"] for m in actions.create)
            limit = asyncio.Semaphore(_CREATE_CONCURRENCY)

            async def create(manifest: dict[str, Any]) -> None:
                async with limit:
                    await asyncio.to_thread(kube.ensure, self.api, manifest)

            await asyncio.gather(*(create(m) for m in actions.create))
            metrics.STEPS_STARTED.inc(len(actions.create))
            if poked is not None:
                metrics.REACTION.observe(time.perf_counter() - poked)
        for job in actions.delete:
            await asyncio.to_thread(kube.delete, self.api, pykube.Job, namespace, job)
        current = run.get("status") or {}
        if actions.status != current:
            changed = {k: v for k, v in actions.status.items() if current.get(k) != v}
            removed = {k: None for k in current if k not in actions.status}
            await asyncio.to_thread(
                kube.patch_status, self.api, kube.PipelineRun, namespace, name, changed | removed
            )
            finished_steps = sum(
                1
                for step, s in actions.status.get("steps", {}).items()
                if s.get("phase") != (current.get("steps", {}).get(step) or {}).get("phase")
                and s.get("phase") in ("Succeeded", "Failed")
            )
            metrics.STEPS_FINISHED.inc(finished_steps)
        for event in actions.events:
            kopf.event(run, type=event.type, reason=event.reason, message=event.message)

    def _arm_deadline(self, key: RunKey, run: dict[str, Any], status: dict[str, Any]) -> None:
        """Wake the run at its deadline, so the timeout holds even when no step reports anything."""
        seconds = run["spec"].get("timeoutSeconds")
        started = parse_time(status.get("startTime"))
        if seconds and started is not None and key not in self._deadlines:
            remaining = (started - self.clock()).total_seconds() + seconds
            self._wake_later(self._deadlines, key, remaining + 0.05)

    async def _phase_changed(self, namespace: str, pipeline: str, phase: RunPhase) -> None:
        """Keep the Pipeline's run summary current; a finished run frees the queue and trims history."""
        runs = await self._runs_of(namespace, pipeline)
        pipeline_obj = await asyncio.to_thread(kube.get, self.api, kube.Pipeline, namespace, pipeline)
        if phase.finished:
            metrics.RUNS_FINISHED.labels(phase=phase.value).inc()
            for other in runs:
                if not (other.get("status") or {}).get("startTime"):
                    self.poke(namespace, other["metadata"]["name"])
            if pipeline_obj is not None:
                limit = (pipeline_obj.get("spec") or {}).get("runHistoryLimit", 10)
                for old in queue.to_prune(runs, limit):
                    await asyncio.to_thread(kube.delete, self.api, kube.PipelineRun, namespace, old)
                    runs = [r for r in runs if r["metadata"]["name"] != old]
        if pipeline_obj is not None:  # runs of a deleted pipeline are the user's to keep
            summary = queue.pipeline_summary(runs)
            await asyncio.to_thread(kube.patch_status, self.api, kube.Pipeline, namespace, pipeline, summary)

    def _forget(self, key: RunKey) -> None:
        self._in_flight.pop(key, None)
        self._failures.pop(key, None)
        for timers in (self._retries, self._deadlines):
            handle = timers.pop(key, None)
            if handle is not None:
                handle.cancel()


def index_key(namespace: str, body: dict[str, Any]) -> RunKey | None:
    """The run a Job or pod belongs to, from the annotation that carries the full (unhashed) name."""
    name = (body.get("metadata", {}).get("annotations") or {}).get(naming.ANNOTATION_RUN)
    return (namespace, name) if name else None
