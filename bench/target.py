"""Where a benchmark runs: the in-process emulator with the operator as a subprocess, or a real cluster.

Emulated (the default): each benchmark gets a fresh emulator, a fresh ``orchest operator --standalone``
process pointed at it, and the fake kubelet of the test harness to run pods; requests are counted per
client at the emulator. Cluster (``--kubeconfig``): the operator must already run there; each benchmark
works in a namespace it creates and deletes. Real kubelets run real pods, so the namespace gets a volume
seeded with the step scripts; ``--fake-kubelet`` is for API servers without nodes or Job controller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bare_engine import BareEngine, PlanJob
from bench.emulator import OPERATOR, CountingEmulator, serving
from bench.operator_process import OperatorProcess, ProcessStats, scrape
from bench.workloads import CLAIM, JOBS, PODS, RUNS, step_file
from orchest_operator.builders.common import restricted_container_security, restricted_pod_security
from orchest_operator.settings import Settings
from tests.support.api import ApiError, KubeApi
from tests.support.kubelet import FakeKubelet, OutcomePolicy, always_succeed
from tests.support.waiting import wait_for

ROLES = ("setup", "recorder", "kubelet", "baseline")
SEED_TIMEOUT = 300.0
"""Seconds a real cluster gets to bind the volume and pull the step image for the seeding Job."""


@dataclass(frozen=True)
class TargetOptions:
    work_dir: Path
    """Kubeconfigs and operator logs of emulated runs go here."""
    kubeconfig: Path | None = None
    """``None``: the emulator."""
    context: str | None = None
    fake_kubelet: bool = False
    metrics_url: str | None = None
    """The operator's Prometheus endpoint on a cluster (e.g. through ``kubectl port-forward``)."""
    step_image: str = field(default_factory=lambda: Settings().default_step_image)
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    api_latency: float = 0.0
    """Emulated only: seconds added to every API request (see ``CountingEmulator.latency``)."""

    @property
    def emulated(self) -> bool:
        return self.kubeconfig is None

    def describe(self) -> dict[str, Any]:
        if self.emulated:
            return {
                "api": "kmock emulator (tests/support/cluster.py), in the benchmark's process",
                "operator": "subprocess: orchest operator --standalone",
                "kubelet": "fake (tests/support/kubelet.py)",
                "api_latency_s": self.api_latency,
            }
        return {
            "api": f"cluster from {self.kubeconfig}" + (f" (context {self.context})" if self.context else ""),
            "operator": "already running in the cluster",
            "kubelet": "fake (tests/support/kubelet.py)" if self.fake_kubelet else "the cluster's",
            "step_image": self.step_image,
        }


@dataclass
class Arena:
    """One benchmark's namespace, clients and, when emulated, its operator process and request counts."""

    namespace: str
    options: TargetOptions
    clients: dict[str, KubeApi]
    kubeconfig: Path
    """How processes of the benchmark's own (the bare engine) reach the API server."""
    emulator: CountingEmulator | None = None
    operator: OperatorProcess | None = None

    def client(self, role: str) -> KubeApi:
        return self.clients[role]

    def bare_engine(self, jobs: Sequence[PlanJob]) -> Awaitable[BareEngine]:
        """A started bare engine for ``jobs`` in this namespace (see ``bench.bare_engine``)."""
        return BareEngine.start(self.kubeconfig, self.options.context, self.namespace, jobs)

    @property
    def image(self) -> str:
        return self.options.step_image

    @property
    def fake_kubelet(self) -> bool:
        return self.options.emulated or self.options.fake_kubelet

    def requests(self, client: str = OPERATOR) -> collections.Counter[str] | None:
        """A copy of a client's request counts so far (emulated only; the operator by default)."""
        return None if self.emulator is None else collections.Counter(self.emulator.requests_of(client))

    async def operator_stats(self) -> ProcessStats | None:
        """The operator's memory and CPU time: from ``/proc`` when it is our subprocess, else from the
        process metrics of its Prometheus endpoint (current RSS only: no high-water mark there)."""
        if self.operator is not None:
            return self.operator.stats()
        samples = await self.metrics()
        if not samples or "process_resident_memory_bytes" not in samples:
            return None
        rss = int(samples["process_resident_memory_bytes"][0][1])
        cpu = float(samples.get("process_cpu_seconds_total", [({}, 0.0)])[0][1])
        return ProcessStats(rss_bytes=rss, peak_rss_bytes=rss, cpu_seconds=cpu)

    @property
    def metrics_url(self) -> str | None:
        return self.operator.metrics_url if self.operator is not None else self.options.metrics_url

    async def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]] | None:
        return None if self.metrics_url is None else await scrape(self.metrics_url)

    def check_operator(self) -> None:
        if self.operator is not None and not self.operator.alive():
            raise RuntimeError(self.operator.failure())

    @contextlib.asynccontextmanager
    async def kubelet(
        self,
        run_time: float,
        job_complete_delay: float,
        labels: str | None = None,
        outcome: OutcomePolicy = always_succeed,
    ) -> AsyncIterator[FakeKubelet | None]:
        """The fake kubelet for this namespace (for Jobs matching ``labels``, each pod ending as ``outcome``
        says), or nothing where real kubelets run the pods."""
        if not self.fake_kubelet:
            yield None
            return
        kubelet = FakeKubelet(
            self.client("kubelet"),
            namespace=self.namespace,
            labels=labels,
            run_time=run_time,
            job_complete_delay=job_complete_delay,
            outcome=outcome,
        )
        await kubelet.start()
        try:
            yield kubelet
        finally:
            await kubelet.stop()
        if kubelet.errors:
            raise RuntimeError(f"the fake kubelet gave up on: {kubelet.errors[:3]}")


@contextlib.asynccontextmanager
async def arena(options: TargetOptions, name: str, seconds: Iterable[float]) -> AsyncIterator[Arena]:
    """A fresh place for benchmark ``name``; ``seconds`` are the step run times it will use."""
    namespace = f"bench-{name}-{secrets.token_hex(3)}"
    if options.emulated:
        async with _emulated(options, name, namespace) as place:
            yield place
    else:
        async with _cluster(options, namespace, seconds) as place:
            yield place


@contextlib.asynccontextmanager
async def _emulated(options: TargetOptions, name: str, namespace: str) -> AsyncIterator[Arena]:
    directory = options.work_dir / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
    directory.mkdir(parents=True)
    async with serving(directory / "kubeconfig", options.api_latency) as emulated:
        clients = {role: emulated.client(role) for role in ROLES}
        operator = await OperatorProcess.start(emulated.kubeconfig, directory / "operator.log")
        place = Arena(namespace, options, clients, emulated.kubeconfig, emulated.emulator, operator)
        try:
            watched = (RUNS, JOBS, PODS)

            def watching() -> bool:
                place.check_operator()
                return all(emulated.emulator.watch_starts[w] > 0 for w in watched)

            # No namespace is created: the emulator does not check that namespaces exist (and kmock 0.8
            # cannot route a POST to /api/v1/namespaces).
            await wait_for(watching, timeout=60, message="the operator watches runs, Jobs and pods")
            yield place
            place.check_operator()
        finally:
            await operator.stop()
            for client in clients.values():
                await client.close()


@contextlib.asynccontextmanager
async def _cluster(options: TargetOptions, namespace: str, seconds: Iterable[float]) -> AsyncIterator[Arena]:
    api = KubeApi.from_kubeconfig(str(options.kubeconfig), options.context)
    assert options.kubeconfig is not None
    place = Arena(namespace, options, dict.fromkeys(ROLES, api), options.kubeconfig)
    try:
        await api.create("v1/namespaces", {"metadata": {"name": namespace}})
        try:
            if not options.fake_kubelet:
                await _seed(api, options, namespace, seconds)
            yield place
        finally:
            await api.delete("v1/namespaces", namespace)
    finally:
        await api.close()


async def _seed(api: KubeApi, options: TargetOptions, namespace: str, seconds: Iterable[float]) -> None:
    """The volume every step mounts, holding one ``sleep-<ms>ms.py`` per run time the benchmark uses."""
    claim: dict[str, Any] = {
        "metadata": {"name": CLAIM, "namespace": namespace},
        "spec": {"accessModes": [options.access_mode], "resources": {"requests": {"storage": "64Mi"}}},
    }
    if options.storage_class:
        claim["spec"]["storageClassName"] = options.storage_class
    await api.create("v1/persistentvolumeclaims", claim)
    files = {step_file(s): f"import time\ntime.sleep({s})\n" for s in {0.0, *seconds}}
    code = "\n".join(f"open({name!r}, 'w').write({text!r})" for name, text in files.items())
    job = {
        "metadata": {"name": "seed", "namespace": namespace},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": restricted_pod_security(),
                    "containers": [
                        {
                            "name": "seed",
                            "image": options.step_image,
                            "command": ["python", "-c", code],
                            "workingDir": "/project",
                            "volumeMounts": [{"name": "project", "mountPath": "/project"}],
                            "securityContext": restricted_container_security(),
                        }
                    ],
                    "volumes": [{"name": "project", "persistentVolumeClaim": {"claimName": CLAIM}}],
                }
            },
        },
    }
    await api.create(JOBS, job)
    deadline = time.monotonic() + SEED_TIMEOUT
    while time.monotonic() < deadline:
        try:
            conditions = (await api.get(JOBS, "seed", namespace)).get("status", {}).get("conditions") or []
        except ApiError:
            conditions = []
        done = {c["type"] for c in conditions if c.get("status") == "True"}
        if "Failed" in done:
            raise RuntimeError(f"seeding the step scripts failed in namespace {namespace}: see Job seed")
        if "Complete" in done:
            return
        await asyncio.sleep(1.0)
    raise RuntimeError(
        f"the volume {CLAIM} was not seeded within {SEED_TIMEOUT:.0f} s in {namespace}: check the "
        "PersistentVolumeClaim (--storage-class, --access-mode) and that the step image can be pulled"
    )
