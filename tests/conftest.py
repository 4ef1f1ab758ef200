"""Shared fixtures: an emulated cluster, the real kopf operator against it, and a fake kubelet.

See tests/support/README.md for how to use them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported in the fixtures: sessions without cluster tests do not pay for kopf/kmock
    from tests.support.api import KubeApi
    from tests.support.cluster import Cluster
    from tests.support.kubelet import FakeKubelet, KubeletFactory
    from tests.support.operators import OperatorFactory, RunningOperator


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """A running emulator with every resource orchest touches, and KUBECONFIG pointing at it.

    The official client reads KUBECONFIG at import time, so its default location is patched too, and its
    default configuration is loaded for code that calls it (from a thread: see the README).
    """
    import kubernetes

    from tests.support.cluster import running_cluster

    kubeconfig = tmp_path / "kubeconfig"
    async with running_cluster(kubeconfig) as running:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.setattr(kubernetes.config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig), raising=False)
        previous = kubernetes.client.Configuration.get_default_copy()
        kubernetes.config.load_kube_config(str(kubeconfig))
        try:
            yield running
        finally:
            kubernetes.client.Configuration.set_default(previous)


@pytest.fixture
def api(cluster: Cluster) -> KubeApi:
    """The async API client bound to ``cluster`` (same as ``cluster.api``)."""
    return cluster.api


@pytest.fixture
async def operator(cluster: Cluster) -> AsyncIterator[OperatorFactory]:
    """A factory: ``await operator("pkg.module", namespaces=(), include=(), args=())`` starts kopf.

    Operators still running at teardown are stopped; an operator that crashed fails the test here.
    """
    from tests.support.operators import start_operator

    started: list[RunningOperator] = []

    async def start(module: str, **options: Any) -> RunningOperator:
        running = await start_operator(cluster, module, **options)
        started.append(running)
        return running

    yield start
    failures: list[BaseException] = []
    for running in reversed(started):
        try:
            await running.stop()
        except BaseException as error:  # stop them all before reporting the first failure
            failures.append(error)
    if failures:
        raise failures[0]


@pytest.fixture
async def fake_kubelet(cluster: Cluster) -> AsyncIterator[KubeletFactory]:
    """A factory: ``await fake_kubelet(run_time=0, job_complete_delay=0.05, outcome=...)`` starts one.

    Kubelets are stopped at teardown; API failures a kubelet gave up on fail the test there.
    """
    from tests.support.kubelet import FakeKubelet

    started: list[FakeKubelet] = []

    async def start(**options: Any) -> FakeKubelet:
        options.setdefault("log_sink", cluster.emulator.write_log)
        kubelet = await FakeKubelet(cluster.api, **options).start()
        started.append(kubelet)
        return kubelet

    yield start
    for kubelet in started:
        await kubelet.stop()
    errors = [error for kubelet in started for error in kubelet.errors]
    assert not errors, f"the fake kubelet gave up on: {errors}"
