"""Carries out the PipelineRun reconciler's decisions against the API.

Every watch event about a run, its Jobs or its pods "pokes" the run; pokes are coalesced per run
(``coalesce.Coalescer``). What concerns a whole pipeline — admitting the next queued run, pruning the run
history, the Pipeline's run summary — is a second coalesced worker per pipeline, retried until it succeeds,
so a transient error can never strand a queue. Runs of one pipeline are admitted under a per-pipeline lock,
so two runs never both pass a ``Queue`` check on stale data.

A pass reads the run as the watch (or the answer to this process's own last status patch) last showed it,
not with a GET: most passes come from Job and pod events, and a 1000-step run is 220 KB. The status patch
names the resourceVersion it was computed from, so a pass that read a stale run fails with 409 Conflict and
is done again from the run as it is. The watch events that only echo this process's own writes are
skipped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pykube

from orchest_operator import aiokube, kube, metrics, naming, queue, stuck
from orchest_operator.builders.job import JobOptions
from orchest_operator.coalesce import Coalescer
from orchest_operator.dag import Dag
from orchest_operator.models import ConcurrencyPolicy, PipelineRunStatus, RunPhase
from orchest_operator.observe import JobView, PodView
from orchest_operator.runs import (
    Actions,
    Inputs,
    Observed,
    current_status,
    lost_steps,
    parse_time,
    reconcile,
)

RunKey = tuple[str, str]  # (namespace, run name)
PipelineKey = tuple[str, str]  # (namespace, pipeline name)
JobSource = Callable[[RunKey], Iterable[JobView]]
PodSource = Callable[[RunKey], Iterable[PodView]]
# The API server refuses these for good (invalid, forbidden by admission): retrying cannot help, the
# step fails with the server's message. A quota refusal (also 403) is retried: quota frees up.
_PERMANENT = {400, 403, 422}
_FOREIGN_RETRY_SECONDS = 2.0
_CREATE_WINDOW = kube.POOL_SIZE  # creates in flight at once: as many as the client has connections
_ECHOES_KEPT = 8  # resourceVersions of a run's own recent writes whose watch events are skipped


@dataclass
class RunController:
    api: aiokube.APIClient
    options: JobOptions
    jobs: JobSource
    pods: PodSource
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    step_events_limit: int = 100
    check_after: float = 5.0
    check_every: float = 10.0
    _runs: Coalescer[RunKey] = field(init=False)
    _pipelines: Coalescer[PipelineKey] = field(init=False)
    _in_flight: dict[RunKey, set[str]] = field(default_factory=dict)
    _rejected: dict[RunKey, dict[str, str]] = field(default_factory=dict)
    _blocked: dict[RunKey, dict[str, str]] = field(default_factory=dict)
    _causes: dict[RunKey, dict[str, stuck.Cause]] = field(default_factory=dict)
    """Why each checked step's pod does not run, as its last check found it."""
    _checked: dict[RunKey, dict[str, datetime]] = field(default_factory=dict)
    """When each step that does not run was last checked."""
    _settled: dict[RunKey, str | None] = field(default_factory=dict)
    """Runs this process finished (by uid): their Jobs' and pods' late events need no pass."""
    _dags: dict[RunKey, tuple[str, Dag]] = field(default_factory=dict)
    """The DAG of each active run's snapshot, by run uid (a run recreated under the same name is another)."""
    _latest: dict[RunKey, dict[str, Any]] = field(default_factory=dict)
    """The newest version of each active run known here: from its watch, or this process's status patch."""
    _written: dict[RunKey, collections.deque[str]] = field(default_factory=dict)
    """The resourceVersions this process's own status patches gave each run."""
    _parsed: dict[RunKey, tuple[str, PipelineRunStatus]] = field(default_factory=dict)
    """Each active run's status as a model, with the resourceVersion it is the status of."""
    _admission: dict[PipelineKey, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._runs = Coalescer(self._reconcile, "reconcile")
        self._pipelines = Coalescer(self._sync_pipeline, "pipeline sync")

    def poke(self, namespace: str, name: str) -> None:
        """Mark the run dirty; its worker reconciles it as soon as it can."""
        self._runs.poke((namespace, name))

    def run_seen(self, body: Mapping[str, Any]) -> None:
        """A watch event brought this version of the run: keep it and reconcile the run, unless the run is
        settled or the event only echoes this process's own status patch (that pass saw all it says)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self._settled:
            if self._settled[key] == meta.get("uid"):
                return
            self._forget(key)  # a new run under a finished one's name (its deletion was not seen)
        if meta.get("resourceVersion") in self._written.get(key, ()):
            return
        self._latest[key] = dict(body)
        self.poke(*key)

    def is_own_create(self, event: Mapping[str, Any]) -> bool:
        """The ADDED event of a Job this process created (or is creating) for an active run: it brings
        nothing the run does not know (an empty status), so the watch drops it (``echoes``). The Job stays
        "in flight" for the run until a later event of the Job (the Job controller's first status) puts it
        in the index. A Job of another owner under the same name is not this process's own, nor is any
        Job of a listing, so a restarted operator indexes every Job it finds."""
        if event.get("type") != "ADDED":
            return False
        body = event.get("object") or {}
        meta = body.get("metadata") or {}
        key = index_key(meta.get("namespace", ""), body)
        if key is None or meta.get("name") not in self._in_flight.get(key, ()):
            return False
        run = self._latest.get(key)
        return run is not None and kube._controller_uid(body) == run["metadata"].get("uid")

    def job_deleted(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """A Job whose ADDED event was dropped may go before any other event of it put it in the index:
        then it is no longer in flight, and the run's next pass sees the step without a Job."""
        key = index_key(namespace, dict(body))
        if key:
            self._in_flight.get(key, set()).discard(name)
            self.poke(*key)

    def sync_pipeline(self, namespace: str, pipeline: str) -> None:
        """Re-admit the pipeline's queue, prune its history and refresh its run summary (coalesced)."""
        self._pipelines.poke((namespace, pipeline))

    def run_deleted(self, namespace: str, name: str, pipeline: str) -> None:
        """A deleted run frees its pipeline's slot as a finished one does."""
        self._forget((namespace, name))
        self.sync_pipeline(namespace, pipeline)

    async def close(self) -> None:
        await self._runs.close()
        await self._pipelines.close()
        await self.api.close()

    async def _reconcile(self, key: RunKey, poked: float | None) -> None:
        namespace, name = key
        run = self._latest.get(key)
        if run is None:
            if key in self._settled:
                return  # a late event of a finished run's Job or pod
            run = await self.api.get(kube.PipelineRun, namespace, name)
            if run is None:
                self._forget(key)
                return
            run = self._latest.setdefault(key, run)  # unless a watch event brought one meanwhile
        pipeline_name = run["spec"]["pipelineRef"]["name"]
        if run["metadata"].get("deletionTimestamp"):
            # Being deleted (e.g. in the foreground): its Jobs go with it; start nothing new.
            self.run_deleted(namespace, name, pipeline_name)
            return
        status = self._status_of(key, run)
        # Admission (deciding and writing a start) holds the pipeline's lock; a started run needs none.
        admitting = status.start_time is None and not status.phase.finished
        lock = self._admission.setdefault((namespace, pipeline_name), asyncio.Lock())
        async with lock if admitting else contextlib.nullcontext():
            decided = await self._decide(run, key, status)
            if decided is None:  # the run's own read shows it being deleted
                self.run_deleted(namespace, name, pipeline_name)
                return
            run, status, actions = decided
            if not await self._apply(run, key, actions, poked):
                return  # decided from a stale run: the pass it poked decides again
        if actions.phase.finished:
            if not status.phase.finished:
                metrics.RUNS_FINISHED.labels(phase=actions.phase.value).inc()
            self._forget(key)
            self._settled[key] = run["metadata"].get("uid")
            self.sync_pipeline(namespace, pipeline_name)
        elif actions.phase is not status.phase:
            self.sync_pipeline(namespace, pipeline_name)
        if actions.phase is RunPhase.RUNNING:
            if actions.check:
                await self._check(key, actions.check)
            self._arm_deadline(key, run, actions.status, actions.wake_in)

    def _status_of(self, key: RunKey, run: dict[str, Any]) -> PipelineRunStatus:
        """The run's status as a model, parsed once per version: most passes write nothing, and the
        status a pass wrote is known without parsing it back."""
        version = run["metadata"].get("resourceVersion")
        cached = self._parsed.get(key)
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        status = current_status(run)
        if version is not None:
            self._parsed[key] = (version, status)
        return status

    async def _decide(
        self, run: dict[str, Any], key: RunKey, status: PipelineRunStatus
    ) -> tuple[dict[str, Any], PipelineRunStatus, Actions] | None:
        """The pass's actions, with the run and status they were decided from: the run as read here when
        a step's Job is gone (``_confirmed``). ``None`` when that read shows the run being deleted."""
        namespace = key[0]
        spec = run["spec"]
        pipeline = earlier = None
        not_started = status.start_time is None and not status.phase.finished
        if not_started:
            pipeline = await self.api.get(kube.Pipeline, namespace, spec["pipelineRef"]["name"])
        if status.snapshot is None and spec.get("rerunOf"):
            earlier = await self.api.get(kube.PipelineRun, namespace, spec["rerunOf"])
        admission = await self._admission_of(run, pipeline, status) if not_started else queue.Admission()
        confirmed: set[str] = set()
        while True:
            jobs = list(self.jobs(key))
            # A created Job stops being "in flight" once the index shows it as this run's: by uid, since a
            # deleted run's Job of the same name may still come and go in the watch stream.
            uid = run["metadata"].get("uid")
            in_flight = self._in_flight.get(key, set())
            in_flight -= {j.name for j in jobs if j.owner_uid == uid and not j.deleting}
            # A running step's Job is gone: failing the step may start the next one, so first read the
            # run itself. The watch-cached run lags: the garbage collector deletes a run's Jobs as soon as
            # the run is deleted in the foreground, and their events may be handled before the run's.
            # The read comes after the Jobs went, so it shows the deletion that made them go.
            lost = lost_steps(status, Observed(jobs={j.step: j for j in jobs}, in_flight=in_flight), uid)
            if lost <= confirmed:
                break
            confirmed |= lost
            fresh = await self.api.get(kube.PipelineRun, namespace, key[1])
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                return None
            if self._latest.get(key) is run:
                self._latest[key] = fresh
            run, status = fresh, self._status_of(key, fresh)
        cached = self._dags.get(key)
        actions = reconcile(
            Inputs(
                run=run,
                pipeline=pipeline,
                observed=Observed(
                    jobs={j.step: j for j in jobs},
                    pods=list(self.pods(key)),
                    in_flight=set(in_flight),
                    rejected=dict(self._rejected.get(key, {})),
                    blocked=dict(self._blocked.get(key, {})),
                    causes=dict(self._causes.get(key, {})),
                    checked=dict(self._checked.get(key, {})),
                ),
                now=self.clock(),
                options=self.options,
                earlier=earlier,
                waiting_for=admission.waiting_for,
                forbidden_by=admission.forbidden_by,
                dag=cached[1] if cached and cached[0] == uid else None,
                status=status,
                check_after=self.check_after,
                check_every=self.check_every,
                step_events_limit=self.step_events_limit,
            )
        )
        if actions.dag is not None and uid:
            self._dags[key] = (uid, actions.dag)
        return run, status, actions

    async def _admission_of(
        self, run: dict[str, Any], pipeline: dict[str, Any] | None, status: PipelineRunStatus
    ) -> queue.Admission:
        """The concurrency policy of the Pipeline, or of the run's snapshot when the Pipeline is gone: a
        deleted (or re-synced) Pipeline must not let queued runs loose on the shared volume."""
        if pipeline is not None:
            policy = (pipeline.get("spec") or {}).get("concurrencyPolicy", ConcurrencyPolicy.QUEUE)
        elif status.snapshot is not None:
            policy = status.snapshot.pipeline.concurrency_policy
        else:
            return queue.Admission()  # no pipeline and no snapshot: the run fails as PipelineNotFound
        me = queue.RunSummary.of(run)
        if (policy == ConcurrencyPolicy.ALLOW or me.isolated) and not me.limit:
            return queue.Admission()
        siblings = await self._runs_of(run["metadata"]["namespace"], run["spec"]["pipelineRef"]["name"])
        return queue.admit(me, [queue.RunSummary.of(r) for r in siblings], policy)

    async def _runs_of(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        runs = await self.api.list_objects(kube.PipelineRun, namespace)
        return [r for r in runs if r["spec"]["pipelineRef"]["name"] == pipeline]

    async def _create_all(self, key: RunKey, manifests: list[dict[str, Any]]) -> None:
        """Create a pass's Jobs at once, at most ``_CREATE_WINDOW`` in flight. Once one fails with an error
        that may pass (a quota, the server overloaded), the rest are not sent: the pass fails and is
        retried with backoff, so a server that refuses costs a window of requests per attempt, not a
        request per step (client-go's controllers create their pods in a "slow start" for the same
        reason; a window keeps the happy path as fast as a plain burst)."""
        window = asyncio.Semaphore(_CREATE_WINDOW)
        failed: list[Exception] = []

        async def one(manifest: dict[str, Any]) -> None:
            async with window:
                if failed:
                    self._in_flight.get(key, set()).discard(manifest["metadata"]["name"])
                    return
                try:
                    await self._create(key, manifest)
                except Exception as err:
                    failed.append(err)

        await asyncio.gather(*(one(m) for m in manifests))
        if failed:
            raise failed[0]

    async def _create(self, key: RunKey, manifest: dict[str, Any]) -> None:
        step = manifest["metadata"]["labels"][naming.LABEL_STEP]
        job = manifest["metadata"]["name"]
        try:
            await self.api.ensure(manifest)
        except kube.ForeignObject:
            # A run deleted and created again under the same name: its old Job still holds the name
            # until the garbage collector removes it. Try again shortly; never adopt it.
            message = f"waiting for the garbage collector to remove Job {job} of an earlier run of this name"
            self._blocked.setdefault(key, {})[step] = message
            self._in_flight.get(key, set()).discard(job)
            self._runs.poke_later(key, _FOREIGN_RETRY_SECONDS)
            return
        except pykube.exceptions.HTTPError as err:
            message = str(err)
            if kube.status_code(err) not in _PERMANENT or "exceeded quota" in message:
                self._in_flight.get(key, set()).discard(job)  # the retried pass creates it again
                raise
            self._rejected.setdefault(key, {})[step] = message
            self._in_flight.get(key, set()).discard(job)
            self.poke(*key)  # record the failure in the next pass
            return
        except BaseException:
            # Not known to exist (a connection lost, a timeout): the retried pass creates it again (a
            # POST that did land meets its own Job, 409). While in flight the step counts as started.
            self._in_flight.get(key, set()).discard(job)
            raise
        self._blocked.get(key, {}).pop(step, None)

    async def _apply(self, run: dict[str, Any], key: RunKey, actions: Actions, poked: float | None) -> bool:
        """Create, delete and write what ``actions`` says; ``False`` when the status write found the run
        changed under it (nothing this pass decided about the run's phase then holds)."""
        namespace = key[0]
        if actions.create:
            self._in_flight.setdefault(key, set()).update(m["metadata"]["name"] for m in actions.create)
            await self._create_all(key, actions.create)
            metrics.STEPS_STARTED.inc(len(actions.create))
            if poked is not None:
                metrics.REACTION.observe(time.perf_counter() - poked)
        for job in actions.delete:
            await self.api.delete(pykube.Job, namespace, job)
        for job, patch in actions.patch_jobs.items():
            try:
                await self.api.patch(pykube.Job, namespace, job, patch)
            except pykube.exceptions.HTTPError as err:
                if kube.status_code(err) != 404:  # a Job gone meanwhile needs no deadline
                    raise
        current = run.get("status") or {}
        if actions.status != current:
            written = await self._write_status(key, run, actions.status)
            if written is None:
                # The run's status changed (or the run went) since it was read: decide again from the
                # run as it is. This pass's events are not sent; the next pass finds them again.
                if self._latest.get(key) is run:
                    del self._latest[key]
                self.poke(*key)
                return False
            version = written["metadata"]["resourceVersion"]
            if key in self._latest:  # not forgotten (deleted) meanwhile
                self._written.setdefault(key, collections.deque(maxlen=_ECHOES_KEPT)).append(version)
            # What the next pass reads, unless a watch event came while the write was on its way: that
            # may be newer (someone's cancel) and must not be lost, or older, and then the next write
            # meets 409 and the pass is done again from the run as it is.
            if self._latest.get(key) is run:
                self._latest[key] = written
                if actions.model is not None:
                    self._parsed[key] = (version, actions.model)
            finished_steps = sum(
                1
                for step, s in actions.status.get("steps", {}).items()
                if s.get("phase") != (current.get("steps", {}).get(step) or {}).get("phase")
                and s.get("phase") in ("Succeeded", "Failed")
            )
            metrics.STEPS_FINISHED.inc(finished_steps)
        for event in actions.events:
            kopf.event(run, type=event.type, reason=event.reason, message=event.message)
        return True

    async def _write_status(
        self, key: RunKey, run: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Patch the run's status from what ``run`` shows to ``status``, only if the run is still at the
        version read (the read may come from a watch that lags). When only its spec or metadata moved
        on (a cancel, a label), the patch is still right and is sent again for the new version. ``None``
        when the status itself moved on or the run is gone: then the pass's decisions are stale."""
        namespace, name = key
        current = run.get("status") or {}
        patch = merge_patch(current, status)
        version = run["metadata"].get("resourceVersion")
        for _attempt in range(2):
            try:
                return await self.api.patch_status(
                    kube.PipelineRun, namespace, name, patch, resource_version=version
                )
            except pykube.exceptions.HTTPError as err:
                if kube.status_code(err) not in (404, 409):
                    raise
            fresh = await self.api.get(kube.PipelineRun, namespace, name)
            if fresh is None or (fresh.get("status") or {}) != current:
                return None
            version = fresh["metadata"].get("resourceVersion")
        return None

    def _arm_deadline(
        self, key: RunKey, run: dict[str, Any], status: dict[str, Any], wake_in: float | None = None
    ) -> None:
        """Wake the run at its deadline, so the timeout holds even when no step reports anything, or
        sooner when a step is due a check or its pending timeout (``wake_in``). Every pass re-arms it, so
        an early wake-up (clock steps) cannot lose it."""
        seconds = run["spec"].get("timeoutSeconds")
        started = parse_time(status.get("startTime"))
        if seconds and started is not None:
            remaining = (started - self.clock()).total_seconds() + seconds
            wake_in = remaining if wake_in is None else min(wake_in, remaining)
        if wake_in is not None:
            self._runs.poke_within(key, wake_in + 0.05)

    async def _check(self, key: RunKey, steps: Mapping[str, tuple[str, str | None]]) -> None:
        """Find why the pods of ``steps`` do not run: one list of the run's unfinished pods and, if a step
        has no pod, one of the namespace's FailedCreate events of Jobs. The next pass folds what was found."""
        namespace = key[0]
        pods = await self.api.list_objects(
            pykube.Pod, namespace, stuck.run_pods_selector(key[1]), stuck.UNFINISHED_PODS
        )
        events: list[dict[str, Any]] = []
        if stuck.needs_events(steps, pods):
            events = await self.api.list_objects(
                pykube.Event, namespace, None, f"involvedObject.kind=Job,reason={stuck.FAILED_CREATE}"
            )
        found = stuck.causes(steps, pods, events)
        now = self.clock()
        causes = self._causes.setdefault(key, {})
        checked = self._checked.setdefault(key, {})
        for step in steps:
            checked[step] = now
            if step in found:
                causes[step] = found[step]
            else:
                causes.pop(step, None)
        self.poke(*key)  # the pass folds what was found and arms the next check

    async def _sync_pipeline(self, key: PipelineKey, _poked: float | None) -> None:
        namespace, pipeline = key
        async with self._admission.setdefault(key, asyncio.Lock()):
            runs = await self._runs_of(namespace, pipeline)
            pipeline_obj = await self.api.get(kube.Pipeline, namespace, pipeline)
        for other in runs:
            if not (other.get("status") or {}).get("startTime"):
                run_key = (namespace, other["metadata"]["name"])
                # As good as a GET, for a run whose watch event is not in yet.
                self._latest.setdefault(run_key, other)
                self.poke(*run_key)
        if pipeline_obj is None:
            return  # runs of a deleted pipeline are the user's to keep
        limit = (pipeline_obj.get("spec") or {}).get("runHistoryLimit", 10)
        for old in queue.to_prune(runs, limit):
            await self.api.delete(kube.PipelineRun, namespace, old)
            runs = [r for r in runs if r["metadata"]["name"] != old]
        summary = queue.pipeline_summary(runs)
        summary["observedGeneration"] = pipeline_obj["metadata"].get("generation")
        current = pipeline_obj.get("status") or {}
        if any(current.get(k) != v for k, v in summary.items()):
            await self.api.patch_status(kube.Pipeline, namespace, pipeline, summary)

    def _forget(self, key: RunKey) -> None:
        self._in_flight.pop(key, None)
        self._rejected.pop(key, None)
        self._blocked.pop(key, None)
        self._causes.pop(key, None)
        self._checked.pop(key, None)
        self._dags.pop(key, None)
        self._latest.pop(key, None)
        self._written.pop(key, None)
        self._parsed.pop(key, None)
        self._settled.pop(key, None)
        self._runs.forget(key)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The smallest JSON merge patch (RFC 7386) from ``old`` to ``new``: maps are diffed key by key, so a
    step that changed costs its own entry, not the whole ``steps`` map (a 1000-step run's status is about
    200 KB); ``None`` removes a key; lists and scalars are sent whole."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if key not in old or before != value:
            both_maps = isinstance(before, dict) and isinstance(value, dict)
            patch[key] = merge_patch(before, value) if both_maps else value
    return patch


def index_key(namespace: str, body: dict[str, Any]) -> RunKey | None:
    """The run a Job or pod belongs to, from the annotation that carries the full (unhashed) name."""
    name = (body.get("metadata", {}).get("annotations") or {}).get(naming.ANNOTATION_RUN)
    return (namespace, name) if name else None
