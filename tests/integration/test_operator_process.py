"""``orchest operator`` as the Deployment runs it: a process of its own, with liveness and metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from asyncio.subprocess import PIPE

import aiohttp
import pytest

from tests.integration.test_run_operator import finished, pipeline, run, start
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fetch(url: str) -> tuple[int, str] | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientError:
        return None


async def test_operator_serves_liveness_and_metrics_and_stops_on_sigterm(
    cluster: Cluster, fake_kubelet
) -> None:
    health, metrics = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "ORCHEST_DEFAULT_STEP_IMAGE": "runner:test"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchest_operator.cli",
        "operator",
        "--standalone",
        # All namespaces: with --namespace kopf lists /api/v1/namespaces, a path kmock 0.8 cannot parse.
        "--all-namespaces",
        "--liveness",
        f"http://127.0.0.1:{health}/healthz",
        "--metrics-port",
        str(metrics),
        env=env,
        stdout=PIPE,
        stderr=PIPE,
    )
    ok = False
    try:
        assert await wait_for(lambda: fetch(f"http://127.0.0.1:{health}/healthz"), timeout=30, interval=0.1)
        await fake_kubelet(job_complete_delay=0.05)
        await start(cluster, pipeline(), run())
        assert await wait_for(lambda: finished(cluster), timeout=20) == "Succeeded"

        async def counted() -> str | None:
            got = await fetch(f"http://127.0.0.1:{metrics}/metrics")
            text = got[1] if got else ""
            return text if 'orchest_runs_finished_total{phase="Succeeded"} 1.0' in text else None

        text = await wait_for(counted, timeout=10, interval=0.1)
        assert "orchest_steps_started_total 4.0" in text
        assert "orchest_reaction_seconds_count" in text
        ok = True
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        if not ok:
            print(err.decode()[-6000:])  # the operator's log, shown by pytest with the failure
    assert process.returncode == 0, err.decode()[-2000:]


@pytest.mark.parametrize("argv", [["--namespace", "a", "--all-namespaces"], ["--metrics-port", "x"]])
async def test_bad_operator_options_are_usage_errors(argv: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchest_operator.cli", "operator", *argv, stdout=PIPE, stderr=PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "usage: orchest operator" in err.decode()
