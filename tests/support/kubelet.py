"""A fake kubelet and Job controller, for API servers that have no nodes (the emulator, a bare control plane).

It watches Jobs and, for each, does what the Job controller and a kubelet together would: creates a pod
``<job>-<5 chars>`` (server-side ``generateName``) carrying the template's labels plus ``controller-uid`` and
``job-name``, owned by the Job; reports it Running, then Succeeded or Failed after a run time; and, after
``job_complete_delay`` (the real controller batches pod updates for about a second), updates the Job:
``succeeded`` with ``SuccessCriteriaMet`` then ``Complete`` (two writes, as Kubernetes >= 1.31 does), or
``failed`` and a replacement pod until ``backoffLimit`` is exceeded, then ``FailureTarget`` then ``Failed``.
``activeDeadlineSeconds`` fails the running pod and the Job with reason ``DeadlineExceeded``; a change
of it on a running Job is honoured, as the Job controller does. A pod still running after the
controller's batch period (``job_complete_delay``) is counted in the Job's ``status.ready``.

An ``obstacle`` policy plays a cluster that says no: the Job controller cannot create the pod (a
``FailedCreate`` Warning Event on the Job, again at each retry, aggregated into one Event with a count as
the real event recorder does), the scheduler finds no node (``PodScheduled=False``), or the kubelet cannot
start the container (a waiting reason such as ``ErrImagePull``, alternating with ``ImagePullBackOff`` as a
real kubelet's pull back-off does). The pod then stays Pending until its Job is deleted or its deadline
passes.

It talks to the API over HTTP through ``KubeApi``, so the same code drives the in-process emulator in tests
and a real API server in benchmarks and e2e runs (never run it where real kubelets exist).

Simplifications, on purpose: one pod at a time (``parallelism``/``completions`` above 1 are run as 1),
``suspend`` and pod failure policies are ignored, no ``job-tracking`` pod finalizer, replacement pods are
created after ``retry_delay`` (0 by default; the real controller backs off 10 s, 20 s, ...). It never deletes
anything by itself: ``collect_garbage`` is the explicit stand-in for the garbage collector.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

from tests.support.api import ApiError, KubeApi

logger = logging.getLogger(__name__)
T = TypeVar("T")

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
GC_RESOURCES: tuple[str, ...] = (
    "batch/v1/jobs",
    "v1/pods",
    "v1/configmaps",
    "v1/secrets",
    "v1/services",
    "v1/serviceaccounts",
    "apps/v1/deployments",
    "rbac.authorization.k8s.io/v1/roles",
    "rbac.authorization.k8s.io/v1/rolebindings",
)
_TERMINAL = ("Complete", "Failed")


@dataclass(frozen=True)
class Outcome:
    """How one pod ends. ``run_time`` overrides the kubelet's default for this pod."""

    succeed: bool = True
    message: str | None = None  # the main container's termination message
    exit_code: int | None = None  # default: 0 on success, 1 on failure
    run_time: float | None = None


OutcomePolicy = Callable[[Mapping[str, Any], Mapping[str, Any]], Outcome]


@dataclass(frozen=True)
class Refused:
    """The pod cannot be created: the API server's refusal, as the Job controller's FailedCreate says it."""

    message: str
    retry_every: float = 0.5


@dataclass(frozen=True)
class Unschedulable:
    """The pod is created but no node fits it."""

    message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


@dataclass(frozen=True)
class CannotStart:
    """The pod is scheduled but its container cannot start (``ErrImagePull``, ``InvalidImageName``,
    ``CreateContainerConfigError``); ``ErrImagePull`` turns into ``ImagePullBackOff`` and back."""

    reason: str
    message: str = ""
    retry_every: float = 0.5


Obstacle = Refused | Unschedulable | CannotStart
ObstaclePolicy = Callable[[Mapping[str, Any]], Obstacle | None]


def no_obstacle(job: Mapping[str, Any]) -> Obstacle | None:
    return None


def always_succeed(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
    return Outcome()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(timestamp: str) -> float:
    return (
        datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()
    )


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    now = _now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


class KubeletFactory(Protocol):
    """The ``fake_kubelet`` fixture: ``await fake_kubelet(job_complete_delay=0.05)`` starts one."""

    async def __call__(
        self,
        *,
        namespace: str | None = None,
        labels: str | Mapping[str, str] | None = None,
        run_time: float = 0.0,
        outcome: OutcomePolicy = always_succeed,
        job_complete_delay: float = 1.0,
        retry_delay: float = 0.0,
        node_name: str = "fake-node",
        obstacle: ObstaclePolicy = no_obstacle,
    ) -> FakeKubelet: ...


class _JobGone(Exception):
    """The Job was deleted while it ran: nothing left to report to."""


class _Deadline(Exception):
    """``activeDeadlineSeconds`` passed."""


class FakeKubelet:
    """Runs Jobs' pods without nodes. ``async with FakeKubelet(api, ...) as kubelet:`` or start()/stop().

    ``namespace`` limits it to one namespace; ``labels`` to Jobs matching a label selector. ``errors``
    collects API failures it gave up on (tests may assert it stays empty).
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str | None = None,
        labels: str | Mapping[str, str] | None = None,
        run_time: float = 0.0,
        outcome: OutcomePolicy = always_succeed,
        job_complete_delay: float = 1.0,
        retry_delay: float = 0.0,
        node_name: str = "fake-node",
        obstacle: ObstaclePolicy = no_obstacle,
    ) -> None:
        self.api = api
        self.obstacle = obstacle
        self.namespace = namespace
        self.labels = labels
        self.run_time = run_time
        self.outcome = outcome
        self.job_complete_delay = job_complete_delay
        self.retry_delay = retry_delay
        self.node_name = node_name
        self.errors: list[str] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, _JobRun] = {}
        self._observer: asyncio.Task[None] | None = None
        self._version: str | None = None  # where the Job watch continues from; None: list again

    async def start(self) -> FakeKubelet:
        """List the existing Jobs (an API error here is raised), then follow them in the background."""
        if self._observer is None:
            self._version = await self._list()
            self._observer = asyncio.create_task(self._observe(), name="fake-kubelet")
        return self

    async def stop(self) -> None:
        tasks = [task for task in (self._observer, *self._tasks.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._observer = None

    async def __aenter__(self) -> FakeKubelet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def collect_garbage(self, resources: Iterable[str] = GC_RESOURCES) -> list[str]:
        """Delete what the garbage collector would; see the module-level ``collect_garbage``."""
        return await collect_garbage(self.api, namespace=self.namespace, resources=resources)

    # --- watching ----------------------------------------------------------------------------------

    async def _list(self) -> str:
        items, version = await self.api.list_with_version(JOBS, self.namespace, labels=self.labels)
        for job in items:
            self._saw(job)
        return version

    async def _observe(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._version is None:
                    self._version = await self._list()
                await self._follow()
                backoff = 0.05
            except (aiohttp.ClientError, ApiError, OSError) as error:
                logger.debug("fake kubelet: watching jobs failed (%s); retrying in %.2f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _follow(self) -> None:
        """Watch through reconnects; return (with no version) when the server says ours is too old."""
        loop = asyncio.get_running_loop()
        while self._version is not None:
            began = loop.time()
            async for event in self.api.watch(
                JOBS, self.namespace, resource_version=self._version, labels=self.labels
            ):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    self._version = None  # relist
                    return
                self._version = (obj.get("metadata") or {}).get("resourceVersion", self._version)
                if event.get("type") == "DELETED":
                    task = self._tasks.get(obj["metadata"]["uid"])
                    if task is not None:
                        task.cancel()
                elif event.get("type") in ("ADDED", "MODIFIED"):
                    self._saw(obj)
            if loop.time() - began < 1.0:
                await asyncio.sleep(0.1)  # a server closing watches at once must not make this a busy loop

    def _saw(self, job: Mapping[str, Any]) -> None:
        meta = job["metadata"]
        conditions = {
            c.get("type")
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("status") == "True"
        }
        if meta["uid"] in self._runs:
            self._runs[meta["uid"]].deadline_changed((job.get("spec") or {}).get("activeDeadlineSeconds"))
        if meta["uid"] in self._tasks or conditions & set(_TERMINAL) or meta.get("deletionTimestamp"):
            return
        self._tasks[meta["uid"]] = asyncio.create_task(self._run_job(dict(job)), name=f"job {meta['name']}")

    # --- one Job -----------------------------------------------------------------------------------

    async def _run_job(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        uid = job["metadata"]["uid"]
        run = self._runs[uid] = _JobRun(self, job)
        try:
            await run.run()
        except _JobGone:
            logger.debug("fake kubelet: job %s is gone", name)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reported, not raised: a background task has nobody to raise to
            self.errors.append(f"job {name}: {error!r}")
            logger.exception("fake kubelet: job %s abandoned", name)
        finally:
            self._runs.pop(uid, None)

    async def call(self, action: Callable[[], Awaitable[T]]) -> T:
        """Retry transient API failures a few times; 404 means the object is gone."""
        delay = 0.05
        for attempt in range(5):
            try:
                return await action()
            except ApiError as error:
                if error.status == 404:
                    raise _JobGone() from error
                if (error.status < 500 and error.status != 409) or attempt == 4:
                    raise
            except (aiohttp.ClientError, OSError):
                if attempt == 4:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


class _JobRun:
    """The Job controller's bookkeeping for one Job, plus the kubelet's part for its pods."""

    def __init__(self, kubelet: FakeKubelet, job: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.api = kubelet.api
        self.job = job
        meta = job["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.spec = job.get("spec") or {}
        status = job.get("status") or {}
        self.failed = int(status.get("failed") or 0)
        self.conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        self.start_time: str = status.get("startTime") or _now()
        deadline = self.spec.get("activeDeadlineSeconds")
        # Counted from now for a new Job (startTime has whole seconds: a 1 s deadline could hit at once),
        # from startTime for a Job another kubelet had started.
        self.started = _epoch(status["startTime"]) if status.get("startTime") else time.time()
        self.deadline: float | None = self.started + float(deadline) if deadline is not None else None

    def deadline_changed(self, seconds: float | None) -> None:
        self.deadline = self.started + float(seconds) if seconds is not None else None

    async def run(self) -> None:
        backoff_limit = int(self.spec.get("backoffLimit", 6))
        try:
            obstacle = self.kubelet.obstacle(self.job)
            if obstacle is not None:
                await self._blocked(obstacle)
            while True:
                pod = await self._start_pod()
                succeeded = await self._run_pod(pod)
                await asyncio.sleep(self.kubelet.job_complete_delay)  # judged on the pod as it ended
                if succeeded:
                    await self._finish_success()
                    return
                self.failed += 1
                if self.failed > backoff_limit:
                    await self._finish_failure(
                        "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                    )
                    return
                await self._job_status({"failed": self.failed, "active": 0, "ready": 0})
                await self._sleep(self.kubelet.retry_delay)
        except _Deadline:
            await self._finish_failure("DeadlineExceeded", "Job was active longer than specified deadline")

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but no further than the Job's deadline (which may change meanwhile)."""
        until = time.time() + seconds
        while self.deadline is not None:
            if time.time() >= self.deadline:
                raise _Deadline()
            if time.time() >= until:
                return
            await asyncio.sleep(max(0.0, min(0.1, until - time.time(), self.deadline - time.time())))
        await asyncio.sleep(max(0.0, until - time.time()))

    async def _blocked(self, obstacle: Obstacle) -> None:
        """Play the cluster refusing this Job's pod until the Job is deleted or its deadline passes."""
        if isinstance(obstacle, Refused):
            await self._job_status({"startTime": self.start_time, "active": 0})
            event: dict[str, Any] | None = None
            while True:
                event = await self._failed_create(obstacle.message, event)
                await self._sleep(obstacle.retry_every)
        pod = await self._start_pod(scheduled=not isinstance(obstacle, Unschedulable))
        name = pod["metadata"]["name"]
        if isinstance(obstacle, Unschedulable):
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": obstacle.message,
                "lastTransitionTime": _now(),
            }
            await self._pod_status(name, {"phase": "Pending", "conditions": [condition]})
            while True:
                await self._sleep(3600)
        reason = obstacle.reason
        while True:
            waiting = {"waiting": {"reason": reason, "message": obstacle.message or reason}}
            containers = (pod.get("spec") or {}).get("containers") or [{"name": "main"}]
            statuses = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": waiting,
                }
                for c in containers
            ]
            scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}
            await self._pod_status(
                name, {"phase": "Pending", "conditions": [scheduled], "containerStatuses": statuses}
            )
            await self._sleep(obstacle.retry_every)
            reason = {"ErrImagePull": "ImagePullBackOff", "ImagePullBackOff": "ErrImagePull"}.get(
                reason, reason
            )

    async def _failed_create(self, message: str, event: dict[str, Any] | None) -> dict[str, Any]:
        """The Job controller's FailedCreate Warning: one Event, its count raised at each retry."""
        now = _now()
        if event is None:
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
                "involvedObject": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": self.name,
                    "namespace": self.namespace,
                    "uid": self.uid,
                },
                "reason": "FailedCreate",
                "message": message,
                "type": "Warning",
                "source": {"component": "job-controller"},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            return await self.kubelet.call(lambda: self.api.create("v1/events", body))
        patch = {"count": int(event.get("count") or 1) + 1, "lastTimestamp": now, "message": message}
        name = event["metadata"]["name"]
        return await self.kubelet.call(lambda: self.api.patch("v1/events", name, patch, self.namespace))

    async def _job_status(self, status: Mapping[str, Any]) -> None:
        patch = {"status": dict(status)}
        await self.kubelet.call(
            lambda: self.api.patch(JOBS, self.name, patch, self.namespace, subresource="status")
        )

    async def _start_pod(self, *, scheduled: bool = True) -> dict[str, Any]:
        template = self.spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            "controller-uid": self.uid,
            "batch.kubernetes.io/controller-uid": self.uid,
            "job-name": self.name,
            "batch.kubernetes.io/job-name": self.name,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{self.name}-",
                "namespace": self.namespace,
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": self.name,
                        "uid": self.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                **(template.get("spec") or {}),
                **({"nodeName": self.kubelet.node_name} if scheduled else {}),
            },
        }
        created = await self.kubelet.call(lambda: self.api.create(PODS, pod))
        await self._job_status({"startTime": self.start_time, "active": 1, "failed": self.failed})
        return created

    async def _run_pod(self, pod: dict[str, Any]) -> bool:
        """Report the pod running, let it run, report how it ended; True if it succeeded."""
        name = pod["metadata"]["name"]
        outcome = self.kubelet.outcome(self.job, pod)
        started = _now()
        containers = (pod.get("spec") or {}).get("containers") or [{"name": "main"}]
        running = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"fake://{name}/{c['name']}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            for c in containers
        ]
        try:
            await self._pod_status(
                name,
                {
                    "phase": "Running",
                    "startTime": started,
                    "hostIP": "10.0.0.1",
                    "podIP": "10.244.0.2",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
                    "containerStatuses": running,
                },
            )
            run_time = outcome.run_time if outcome.run_time is not None else self.kubelet.run_time
            batch = self.kubelet.job_complete_delay
            if run_time > batch:  # the controller's next sync sees the pod Ready
                await self._sleep(batch)
                await self._job_status({"ready": 1})
                await self._sleep(run_time - batch)
            else:
                await self._sleep(run_time)
        except _Deadline:
            self.failed += 1
            await self._end_pod(
                name,
                running,
                False,
                137,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
            raise
        except _JobGone:
            return False  # the pod was deleted under us: the controller counts it as failed
        code = outcome.exit_code if outcome.exit_code is not None else (0 if outcome.succeed else 1)
        existed = await self._end_pod(name, running, outcome.succeed, code, None, outcome.message)
        return outcome.succeed and existed

    async def _end_pod(
        self,
        name: str,
        running: list[dict[str, Any]],
        succeed: bool,
        code: int,
        reason: str | None,
        message: str | None,
    ) -> bool:
        """Report the pod terminated; False if it had been deleted meanwhile."""
        finished = _now()
        statuses = []
        for index, container in enumerate(running):
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed" if succeed else "Error",
                "startedAt": container["state"]["running"]["startedAt"],
                "finishedAt": finished,
                "containerID": container["containerID"],
            }
            if message and index == 0 and reason is None:
                terminated["message"] = message
            statuses.append(
                {**container, "ready": False, "started": False, "state": {"terminated": terminated}}
            )
        status: dict[str, Any] = {
            "phase": "Succeeded" if succeed else "Failed",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "PodCompleted" if succeed else "PodFailed",
                    "lastTransitionTime": finished,
                }
            ],
            "containerStatuses": statuses,
        }
        if reason:
            status.update(reason=reason, message=message)
        try:
            await self._pod_status(name, status)
        except _JobGone:
            return False
        return True

    async def _pod_status(self, name: str, status: Mapping[str, Any]) -> None:
        patch = {"status": dict(status)}
        await self.kubelet.call(
            lambda: self.api.patch(PODS, name, patch, self.namespace, subresource="status")
        )

    async def _finish_success(self) -> None:
        message = "Reached expected number of succeeded pods"
        self.conditions.append(_condition("SuccessCriteriaMet", "CompletionsReached", message))
        await self._job_status(
            {"succeeded": 1, "active": 0, "ready": 0, "failed": self.failed, "conditions": self.conditions}
        )
        self.conditions.append(_condition("Complete", "CompletionsReached", message))
        await self._job_status({"conditions": self.conditions, "completionTime": _now()})

    async def _finish_failure(self, reason: str, message: str) -> None:
        self.conditions.append(_condition("FailureTarget", reason, message))
        await self._job_status(
            {"failed": self.failed, "active": 0, "ready": 0, "conditions": self.conditions}
        )
        self.conditions.append(_condition("Failed", reason, message))
        await self._job_status({"conditions": self.conditions})


async def collect_garbage(
    api: KubeApi, *, namespace: str | None = None, resources: Iterable[str] = GC_RESOURCES, rounds: int = 20
) -> list[str]:
    """Do one pass of the garbage collector's work, until nothing changes; return what was deleted.

    Deletes objects of ``resources`` none of whose owners exist any more (in background, like the GC does
    for dependents), deletes the dependents of objects being deleted in the foreground and then releases
    their ``foregroundDeletion`` finalizer, and detaches the dependents of objects deleted with ``Orphan``
    propagation before releasing their ``orphan`` finalizer.
    """
    deleted: list[str] = []
    kinds = list(resources)
    for _ in range(rounds):
        listed = [(res, obj) for res in kinds for obj in await api.list(res, namespace)]
        changed = False
        for res, obj in listed:
            meta = obj["metadata"]
            if meta.get("deletionTimestamp") and {"foregroundDeletion", "orphan"} & set(
                meta.get("finalizers") or []
            ):
                changed |= await _finalize(api, res, obj, listed, deleted)
        if changed:
            continue  # ownership changed: decide what is garbage on a fresh listing
        for res, obj in listed:
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp") and await _orphaned(api, meta):
                await api.delete(res, meta["name"], meta.get("namespace"), propagation_policy="Background")
                deleted.append(f"{res} {meta.get('namespace')}/{meta['name']}")
                changed = True
        if not changed:
            return deleted
    raise RuntimeError(f"garbage collection did not settle in {rounds} rounds")


async def _finalize(
    api: KubeApi,
    res: str,
    owner: Mapping[str, Any],
    listed: list[tuple[str, dict[str, Any]]],
    deleted: list[str],
) -> bool:
    meta = owner["metadata"]
    dependents = [
        (dep_res, dep)
        for dep_res, dep in listed
        if any(ref.get("uid") == meta["uid"] for ref in dep["metadata"].get("ownerReferences") or [])
    ]
    finalizers = list(meta.get("finalizers") or [])
    if "orphan" in finalizers:
        for dep_res, dep in dependents:
            refs = [ref for ref in dep["metadata"]["ownerReferences"] if ref.get("uid") != meta["uid"]]
            await api.patch(
                dep_res,
                dep["metadata"]["name"],
                {"metadata": {"ownerReferences": refs or None}},
                dep["metadata"].get("namespace"),
            )
        finalizers.remove("orphan")
    elif dependents:
        pending = [(r, d) for r, d in dependents if not d["metadata"].get("deletionTimestamp")]
        for dep_res, dep in pending:
            await api.delete(
                dep_res,
                dep["metadata"]["name"],
                dep["metadata"].get("namespace"),
                propagation_policy="Foreground",
            )
            deleted.append(f"{dep_res} {dep['metadata'].get('namespace')}/{dep['metadata']['name']}")
        return bool(pending)  # dependents still finalizing: the owner waits for them, as with the real GC
    else:
        finalizers.remove("foregroundDeletion")
    await api.patch(
        res, meta["name"], {"metadata": {"finalizers": finalizers or None}}, meta.get("namespace")
    )
    return True


async def _orphaned(api: KubeApi, meta: Mapping[str, Any]) -> bool:
    """True when the object has owners and none of them exists (the GC's definition of garbage)."""
    refs = meta.get("ownerReferences") or []
    return bool(refs) and not any([await _owner_exists(api, meta, ref) for ref in refs])


async def _owner_exists(api: KubeApi, meta: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    resource, namespaced = await api.resource_for(ref["apiVersion"], ref["kind"])
    owner = await api.find(resource, ref["name"], meta.get("namespace") if namespaced else None)
    return owner is not None and owner["metadata"].get("uid") == ref.get("uid")
