"""How the operator reads runs: from its watch, not with a GET per pass, and safely when that read is stale.

A pass decides from the run as the watch (or the answer to the operator's own status patch) last showed
it; the status patch names the resourceVersion it was computed from. These tests check that no pass
fetches the run, and that edits of a running run (which move its resourceVersion under the operator)
neither lose a step's progress nor start a step twice.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_run_operator import (
    NS,
    OPERATOR,
    RUNS,
    finished,
    jobs,
    pipeline,
    run,
    start,
    status,
)
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

CHAIN = [{"name": "s0", "file": "s.py"}] + [
    {"name": f"s{i}", "file": "s.py", "dependsOn": [f"s{i - 1}"]} for i in range(1, 5)
]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


async def test_no_pass_fetches_the_run(cluster: Cluster, operator, fake_kubelet) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=0.05, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=CHAIN), run())
    assert await wait_for(lambda: finished(cluster), timeout=15) == "Succeeded"
    await wait_for(lambda: all(j.get("status", {}).get("conditions") for j in jobs(cluster)), timeout=5)
    await asyncio.sleep(0.2)  # the Complete events of the finished run's Jobs come in
    counts = cluster.emulator.request_counts  # the emulator's names: FETCH is a GET of one object
    assert counts[f"FETCH {RUNS}"] == 0
    # One write per step transition at most, plus the start and the end: no echo of a write is reconciled.
    assert counts[f"UPDATE {RUNS}/status"] <= 2 * len(CHAIN) + 2


async def test_edits_of_a_running_run_neither_lose_nor_repeat_steps(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(run_time=0.15, job_complete_delay=0.05)
    await start(cluster, pipeline(steps=CHAIN), run())
    for i in range(30):  # each edit moves the run's resourceVersion while the operator writes its status
        await cluster.api.patch(RUNS, "r1", {"metadata": {"labels": {"touched": str(i)}}}, NS)
        await asyncio.sleep(0.02)
    assert await wait_for(lambda: finished(cluster), timeout=15) == "Succeeded"
    assert {name: s["phase"] for name, s in status(cluster)["steps"].items()} == {
        step["name"]: "Succeeded" for step in CHAIN
    }
    assert cluster.emulator.request_counts["CREATE batch/v1/jobs"] == len(CHAIN)
