"""What every page of the dashboard reads: the informers (one watch per kind) and renderings shared by
the pages of one run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Sequence

from aiohttp import web

from orchest_operator import naming
from orchest_operator.dashboard import job_views, pages, updates, views
from orchest_operator.dashboard.client import ApiClient, Resource
from orchest_operator.dashboard.informers import Informer
from orchest_operator.models import GROUP, VERSION

RUNS = Resource(GROUP, VERSION, "pipelineruns")
PIPELINES = Resource(GROUP, VERSION, "pipelines")
JOBS = Resource(GROUP, VERSION, "pipelinejobs")
PODS = Resource("", "v1", "pods")
VIEW_CACHE_SIZE = 32
"""Runs whose rendered rows are kept for their open pages."""

Clock = Callable[[], datetime.datetime]
STATE: web.AppKey[Dashboard] = web.AppKey("dashboard")


class Dashboard:
    """The informers every page reads and the facts the pages share."""

    def __init__(self, client: ApiClient, namespaces: Sequence[str] | None, clock: Clock = pages.now) -> None:
        self.client = client
        self.namespaces = list(namespaces) if namespaces else None
        self.clock = clock
        self.runs = Informer(client, RUNS, self.namespaces)
        self.pipelines = Informer(client, PIPELINES, self.namespaces)
        self.jobs = Informer(client, JOBS, self.namespaces)
        # Only step pods (the label every step's pod template carries), and only what the pages read.
        self.pods = Informer(
            client, PODS, self.namespaces, label_selector=naming.LABEL_RUN, keep=views.pod_summary
        )
        self.informers = (self.runs, self.pipelines, self.jobs, self.pods)
        self._views: dict[str, tuple[tuple[str, int], views.RunDetail, updates.RunState]] = {}
        self._pods: tuple[int, views.PodIndex] | None = None

    @property
    def scope(self) -> str:
        return "all namespaces" if self.namespaces is None else "namespace " + ", ".join(self.namespaces)

    @property
    def kinds(self) -> list[str]:
        return [i.resource.plural for i in self.informers if i.synced.is_set() and not i.absent]

    def pod_index(self) -> views.PodIndex:
        """The latest pod of each Job, rebuilt only when a pod changed (a cluster-wide dashboard holds
        every step pod, and each run page asks)."""
        if self._pods is None or self._pods[0] != self.pods.version:
            self._pods = (self.pods.version, views.PodIndex(self.pods.objects.values()))
        return self._pods[1]

    def run_detail(self, key: str) -> views.RunDetail | None:
        run = self.runs.objects.get(key)
        if run is None:
            return None
        return views.run_detail(run, self.pod_index(), self.clock(), pods_known=self.pods.synced.is_set())

    def run_view(self, key: str) -> tuple[views.RunDetail, updates.RunState] | None:
        """A run's detail and rendered rows, shared by every page of that run until the run or a pod
        changes: ten tabs on a 1000-step run render it once per change, not ten times."""
        run = self.runs.objects.get(key)
        if run is None:
            self._views.pop(key, None)
            return None
        stamp = (str((run.get("metadata") or {}).get("resourceVersion")), self.pods.version)
        cached = self._views.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        detail = self.run_detail(key)
        assert detail is not None
        state = updates.run_state(detail)
        self._views.pop(key, None)
        self._views[key] = (stamp, detail, state)
        while len(self._views) > VIEW_CACHE_SIZE:
            del self._views[next(iter(self._views))]
        return detail, state

    async def start(self) -> None:
        for informer in self.informers:
            informer.start()

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers))

    def job_detail(self, key: str, batch: str | None) -> job_views.JobDetail | None:
        job = self.jobs.objects.get(key)
        if job is None:
            return None
        return job_views.job_detail(job, self.runs.objects.values(), self.clock(), batch)


async def synced(*informers: Informer) -> None:
    """Wait briefly for the first listing, so a page opened at start-up is not shown empty."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), 10)
