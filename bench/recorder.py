"""The benchmark's view from the API side: when each Job, pod transition and run phase was first seen.

Operator and baselines are timed by the same watch streams in the same process, so whatever a watch
adds to an event's delivery is added to both sides of every comparison. Reaction times are differences of
two sightings (a pod seen Succeeded, the next Job seen created), which works on any API server; the
operator's own histogram is read separately where its metrics endpoint is reachable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.emulator import compact, merge_diff
from bench.streams import objects
from bench.workloads import JOBS, PODS, RUNS
from tests.support.api import KubeApi


def _true(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


class Recorder:
    """Watches Jobs, pods and (optionally) PipelineRuns of one namespace; ``perf_counter`` timestamps."""

    def __init__(self, api: KubeApi, namespace: str, *, runs: bool = True, weigh_runs: bool = False) -> None:
        self.api = api
        self.namespace = namespace
        self.resources = (JOBS, PODS, RUNS) if runs else (JOBS, PODS)
        self.weigh_runs = weigh_runs
        self.job_created: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.pod_succeeded: dict[str, float] = {}
        """Job name → when a pod of it was first seen Succeeded."""
        self.run_phase: dict[tuple[str, str], float] = {}
        self.run_reason: dict[str, str] = {}
        """Run → reason and message of its ``Succeeded`` condition once it has Failed."""
        self.run_diffs: list[int] = []
        """Sizes of the smallest merge patches between consecutive status versions seen."""
        self._statuses: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Recorder:
        ready = [asyncio.Event() for _ in self.resources]
        self._tasks = [
            asyncio.create_task(self._follow(res, flag), name=f"recorder {res}")
            for res, flag in zip(self.resources, ready, strict=True)
        ]
        await asyncio.gather(*(flag.wait() for flag in ready))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Recorder:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait(
        self, predicate: Callable[[], Any], timeout: float, what: str, run: str | None = None
    ) -> None:
        """Until ``predicate()`` holds; re-checked on every event seen. A ``run`` that fails meanwhile
        ends the wait with its reason, instead of a timeout much later."""

        def done() -> bool:
            return bool(predicate()) or (run is not None and run in self.run_reason)

        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(done)

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise TimeoutError(f"not reached within {timeout:.0f} s: {what}") from None
        if run is not None and run in self.run_reason and not predicate():
            raise RuntimeError(f"run {run} failed ({self.run_reason[run]}) before {what}")

    def all_pods_succeeded(self, jobs: Iterable[str]) -> bool:
        """Every Job seen created and a pod of each seen Succeeded (Jobs and pods come on separate
        watch streams, so one may be seen before the other)."""
        return all(j in self.pod_succeeded and j in self.job_created for j in jobs)

    async def _follow(self, resource: str, ready: asyncio.Event) -> None:
        async for kind, obj in objects(self.api, resource, self.namespace, listed=ready):
            if kind in ("ADDED", "MODIFIED"):
                await self._saw(resource, obj)

    async def _saw(self, resource: str, obj: dict[str, Any]) -> None:
        now = time.perf_counter()
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if resource == JOBS:
            self.job_created.setdefault(name, now)
            if _true(obj, "Complete"):
                self.job_complete.setdefault(name, now)
        elif resource == PODS:
            labels = meta.get("labels") or {}
            job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
            if job and (obj.get("status") or {}).get("phase") == "Succeeded":
                self.pod_succeeded.setdefault(job, now)
        else:
            status = obj.get("status") or {}
            self.run_phase.setdefault((name, status.get("phase", "Pending")), now)
            if status.get("phase") == "Failed":
                cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})
                self.run_reason[name] = f"{cond.get('reason')}: {cond.get('message')}"
            if self.weigh_runs:
                previous = self._statuses.get(name)
                if previous is not None and previous != status:
                    self.run_diffs.append(compact({"status": merge_diff(previous, status)}))
                self._statuses[name] = status
        async with self._changed:
            self._changed.notify_all()
