"""The dashboard's server side against the emulator: one watch per kind whatever the number of open pages,
kinds that are not installed, watches that end or expire, and the ``orchest dashboard`` command itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from orchest_operator.dashboard.client import ApiClient, load_configuration
from orchest_operator.dashboard.server import create_app
from orchest_operator.dashboard.state import STATE
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

NS = "team"
RUNS = "orchest.io/v1alpha1/pipelineruns"


def run(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"pipelineRef": {"name": "p"}}}


@pytest.fixture
async def served(cluster: Cluster) -> AsyncIterator[tuple[str, web.Application]]:
    async with serving(cluster) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(cluster: Cluster) -> AsyncIterator[tuple[str, web.Application]]:
    configuration, _ = load_configuration(str(cluster.kubeconfig))
    async with ApiClient(configuration) as client:
        app = create_app(client, [NS])
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            yield f"http://{host}:{port}", app
        finally:
            await runner.cleanup()


async def events(response: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    """The data of the next server-sent event of ``kind`` (within 10 s)."""
    return await asyncio.wait_for(_next_event(response, kind), 10)


async def _next_event(response: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    current = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: ") and current == kind:
            return json.loads(line[6:])
    raise AssertionError(f"the stream ended before a {kind!r} event")


async def test_pages_share_one_watch_per_kind(cluster: Cluster, served: tuple[str, web.Application]) -> None:
    url, _ = served
    await cluster.api.create(RUNS, run("r1"))
    async with aiohttp.ClientSession() as session:
        streams = [await session.get(f"{url}/runs/events") for _ in range(5)]
        try:
            for stream in streams:
                assert set((await events(stream, "rows"))["rows"]) == {"team/r1"}
            await cluster.api.create(RUNS, run("r2"))
            for stream in streams:
                assert (await events(stream, "rows"))["order"] == ["team/r2", "team/r1"]
            for page in ("/runs", "/runs/team/r1", "/pipelines", "/healthz", "/static/dashboard.js"):
                async with session.get(url + page) as response:
                    assert response.status == 200
                    assert "emulator-token" not in await response.text(), "no credential reaches the browser"
        finally:
            for stream in streams:
                stream.close()
    starts = cluster.emulator.watch_starts
    assert starts["orchest.io/v1alpha1/pipelineruns"] == 1, "five live pages, one watch"
    assert starts["v1/pods"] == 1 and starts["orchest.io/v1alpha1/pipelines"] == 1


async def test_a_kind_that_is_not_installed_is_left_out(cluster: Cluster) -> None:
    cluster.emulator.unregister("orchest.io/v1alpha1/pipelinejobs")  # a cluster without PipelineJobs
    async with serving(cluster) as (url, app):
        await _without_jobs(url, app)


async def _without_jobs(url: str, app: web.Application) -> None:
    dashboard = app[STATE]
    await wait_for(lambda: dashboard.jobs.synced.is_set(), timeout=5)
    assert dashboard.jobs.absent and "pipelinejobs" not in dashboard.kinds
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        assert await response.json() == {"ok": True, "problems": []}
    async with aiohttp.ClientSession() as session, session.get(f"{url}/jobs") as response:
        assert response.status == 404 and "PipelineJobs are not installed" in await response.text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_command_serves_the_dashboard(cluster: Cluster) -> None:
    await cluster.api.create(RUNS, run("r1"))
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchest_operator.cli",
        "dashboard",
        "-n",
        NS,
        "--port",
        str(port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith(f"orchest dashboard of {NS} on {cluster.url}: http://127.0.0.1:{port}/")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/runs") as response,
        ):
            assert response.status == 200 and 'data-key="team/r1"' in await response.text()
    finally:
        process.terminate()
        await process.wait()


async def test_a_port_in_use_is_one_line(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchest_operator.cli",
            "dashboard",
            "--port",
            str(port),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().startswith(f"orchest: cannot listen on 127.0.0.1:{port}: ")
    assert len(err.decode().strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "orchest: --port 0: not a port number"),
        (["--kubeconfig", "/nonexistent"], "orchest: no cluster configured"),
    ],
)
def test_command_errors_are_one_line(args: list[str], message: str, tmp_path: Any) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "KUBERNETES_SERVICE_HOST": ""}
    done = subprocess.run(
        [sys.executable, "-m", "orchest_operator.cli", "dashboard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (1, 2) and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_the_log_of_a_step_whose_container_waits(
    cluster: Cluster, served: tuple[str, web.Application]
) -> None:
    url, app = served
    created = await cluster.api.create(RUNS, run("r1"))
    steps = {"s": {"phase": "Running", "jobName": "r1-s-1"}}
    await cluster.api.patch_status(
        RUNS, created["metadata"]["name"], {"phase": "Running", "steps": steps}, NS
    )
    labels = {"job-name": "r1-s-1", "orchest.io/pipeline-run": "r1", "orchest.io/step": "s"}
    await cluster.api.create("v1/pods", {"metadata": {"name": "r1-s-1-x", "namespace": NS, "labels": labels}})
    await wait_for(lambda: f"{NS}/r1-s-1-x" in app[STATE].pods.objects, timeout=5)
    async with aiohttp.ClientSession() as session, session.get(f"{url}/runs/{NS}/r1/steps/s/log") as stream:
        assert await events(stream, "info") == "Pod r1-s-1-x (following while it runs)"
        assert (await events(stream, "info")).startswith("Step s's container has not started yet (")
        assert await events(stream, "end") == {}
