"""Two ``orchest operator --leader-elect`` processes against the emulator: one acts, the other stands by
watching nothing, and takes over when the leader is killed with SIGKILL mid-run.

Each process has its own kubeconfig token, so the emulator tells their requests apart. Lease timings are
shortened through the operator's settings (3 s lease, 2 s renew deadline, 0.25 s retry); the e2e test
(tests/e2e/test_failover.py) runs the standard ones on a real cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest

from orchest_operator import naming
from tests.integration.test_operator_process import fetch, free_port
from tests.integration.test_run_operator import finished, jobs, pipeline, run, start, status
from tests.support.cluster import Cluster, write_kubeconfig
from tests.support.kubelet import Outcome
from tests.support.waiting import wait_for

LEASES = "coordination.k8s.io/v1/leases"
LEASE_NS, LEASE = "orchest-system", "orchest-operator"
TIMINGS = {
    "ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS": "3",
    "ORCHEST_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "2",
    "ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "0.25",
}
CHAIN = [{"name": f"s{i}", "file": "x.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(4)]


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    health: int
    log: bytes = b""
    _reader: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.log += chunk

    async def exit_code(self, timeout: float = 30) -> int:
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit:\n{self.log.decode()[-4000:]}") from None
        if self._reader is not None:
            await self._reader
        return self.process.returncode  # type: ignore[return-value]


@pytest.fixture
async def replicas(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Replica] = []

    async def start_replica(name: str) -> Replica:
        kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{name}", cluster.url, token=name)
        health = free_port()
        env = {**os.environ, **TIMINGS, "KUBECONFIG": str(kubeconfig), "ORCHEST_DEFAULT_STEP_IMAGE": "r:t"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchest_operator.cli",
            "operator",
            "--leader-elect",
            "--leader-elect-resource-namespace",
            LEASE_NS,
            "--all-namespaces",
            "--liveness",
            f"http://127.0.0.1:{health}/healthz",
            env=env,
            stdout=PIPE,
            stderr=PIPE,
        )
        replica = Replica(name, process, health)
        replica._reader = asyncio.create_task(replica._read())
        started.append(replica)
        return replica

    yield start_replica
    for replica in started:
        if replica.process.returncode is None:
            replica.process.kill()
        await replica.exit_code()


def holder(cluster: Cluster) -> str:
    lease = cluster.peek(LEASES, LEASE, LEASE_NS) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def requests_of(cluster: Cluster, replica: Replica) -> set[str]:
    return set(cluster.emulator.by_token[replica.name])


async def alive(replica: Replica) -> bool:
    got = await fetch(f"http://127.0.0.1:{replica.health}/healthz")
    return got is not None and got[0] == 200


async def leader_and_standby(cluster: Cluster, replicas: Any) -> tuple[Replica, Replica]:
    first = await replicas("replica-a")
    await wait_for(lambda: holder(cluster), timeout=30, message="the first replica took the Lease")
    second = await replicas("replica-b")
    await wait_for(lambda: alive(second), timeout=30, interval=0.1, message="the standby answers liveness")
    # the standby has looked at the Lease (and found it held) at least once
    await wait_for(lambda: f"FETCH {LEASES}" in requests_of(cluster, second), timeout=10)
    return first, second


async def test_standby_takes_over_a_killed_leader_and_the_run_has_one_job_per_step(
    cluster: Cluster, replicas: Any, fake_kubelet: Any
) -> None:
    a, b = await leader_and_standby(cluster, replicas)
    assert holder(cluster).startswith(os.uname().nodename + "_")
    # The leader runs kopf: it watches runs. The standby has made Lease calls only.
    await wait_for(lambda: "WATCH orchest.io/v1alpha1/pipelineruns" in requests_of(cluster, a), timeout=30)
    assert {r.split()[1] for r in requests_of(cluster, b)} == {LEASES}

    await fake_kubelet(job_complete_delay=0.05, outcome=lambda job, pod: Outcome(run_time=1.0))
    await start(cluster, pipeline(steps=CHAIN), run())
    await wait_for(lambda: len(jobs(cluster)) == 2, timeout=20, message="the run is half-way")
    assert {r.split()[1] for r in requests_of(cluster, b)} == {LEASES}, "only the leader acted"
    first_holder = holder(cluster)

    a.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await wait_for(lambda: holder(cluster) not in ("", first_holder), timeout=10, interval=0.05)
    took_over = time.monotonic() - killed
    # lease duration + one retry period, plus this loaded machine's slack
    assert took_over < 3 + 0.25 + 2, took_over
    assert await a.exit_code() == -signal.SIGKILL

    assert await wait_for(lambda: finished(cluster), timeout=30) == "Succeeded"
    st = status(cluster)
    assert {n: s["phase"] for n, s in st["steps"].items()} == dict.fromkeys(
        ("s0", "s1", "s2", "s3"), "Succeeded"
    )
    made = jobs(cluster)
    assert sorted(j["metadata"]["name"] for j in made) == sorted(
        naming.job_name("r1", f"s{i}") for i in range(4)
    )
    assert all(s["attempts"] == 1 for s in st["steps"].values()), st["steps"]
    # Job creations: 2 by the killed leader, 2 by its successor (a 409 from a repeated create would show
    # as a third request of the same kind; there is none).
    creates = "CREATE batch/v1/jobs"
    assert cluster.emulator.by_token["replica-a"][creates] == 2
    assert cluster.emulator.by_token["replica-b"][creates] == 2
    b.process.send_signal(signal.SIGTERM)
    assert await b.exit_code() == 0, b.log.decode()[-3000:]


async def test_a_clean_shutdown_hands_the_lease_over_at_once(cluster: Cluster, replicas: Any) -> None:
    a, b = await leader_and_standby(cluster, replicas)
    first_holder = holder(cluster)
    a.process.send_signal(signal.SIGTERM)
    assert await a.exit_code() == 0, a.log.decode()[-3000:]
    assert b"released the Lease" in a.log
    stopped = time.monotonic()
    await wait_for(lambda: holder(cluster) not in ("", first_holder), timeout=10, interval=0.05)
    # released: the standby takes it at its next look, not a lease duration later
    assert time.monotonic() - stopped < 2.5
    lease = cluster.peek(LEASES, LEASE, LEASE_NS)
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1  # a, then b
    b.process.send_signal(signal.SIGTERM)
    assert await b.exit_code() == 0


async def test_a_standby_stops_cleanly_and_a_leader_that_cannot_renew_exits(
    cluster: Cluster, replicas: Any
) -> None:
    a, b = await leader_and_standby(cluster, replicas)
    b.process.send_signal(signal.SIGTERM)
    assert await b.exit_code(timeout=10) == 0, b.log.decode()[-3000:]

    cluster.emulator["put", kmock.resource(LEASES)] << 503
    failing = time.monotonic()
    assert await a.exit_code(timeout=15) == 1
    # it gave up at the renew deadline (2 s), before anyone could have taken over (3 s)
    assert time.monotonic() - failing < 3 + 1.5
    assert b"leader election lost: could not renew the Lease for 2 s" in a.log


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "orchest: --leader-elect outside a pod needs --leader-elect-resource-namespace NS"),
        (
            ["--leader-elect-resource-namespace", "ns"],
            {"ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "0"},
            "orchest: ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS must be a positive number of seconds, "
            "got '0'",
        ),
        (
            ["--leader-elect-resource-namespace", "ns"],
            {"ORCHEST_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20"},
            "orchest: leader election: the renew deadline (20 s) must be shorter than the lease duration "
            "(15 s), or a replica could take over while the holder still acts",
        ),
    ],
)
async def test_bad_leader_election_input_is_one_line_and_exit_2(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchest_operator.cli",
        "operator",
        "--leader-elect",
        *argv,
        env={**os.environ, **env},
        stdout=PIPE,
        stderr=PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert err.decode().strip() == message
