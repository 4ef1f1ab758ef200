"""The controller's small pure parts: the minimal status patch and the coalescing worker."""

from __future__ import annotations

import asyncio

import pytest

from orchest_operator import coalesce
from orchest_operator.coalesce import Coalescer
from orchest_operator.run_controller import merge_patch


def test_merge_patch_sends_only_what_changed() -> None:
    old = {
        "phase": "Running",
        "steps": {"a": {"phase": "Running", "jobName": "j"}, "b": {"phase": "Pending"}},
    }
    new = {
        "phase": "Running",
        "steps": {"a": {"phase": "Succeeded", "jobName": "j"}, "b": {"phase": "Pending"}},
    }
    assert merge_patch(old, new) == {"steps": {"a": {"phase": "Succeeded"}}}


def test_merge_patch_removes_keys_and_replaces_lists() -> None:
    old = {
        "message": "x",
        "conditions": [{"type": "Succeeded", "status": "Unknown"}],
        "steps": {"a": {"m": 1}},
    }
    new = {"conditions": [{"type": "Succeeded", "status": "True"}], "steps": {"a": {}}}
    assert merge_patch(old, new) == {
        "message": None,
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "steps": {"a": {"m": None}},
    }


def test_merge_patch_of_equal_documents_is_empty() -> None:
    doc = {"a": {"b": [1, 2]}, "c": None}
    assert merge_patch(doc, dict(doc)) == {}


async def test_a_burst_of_pokes_costs_few_passes() -> None:
    passes: list[str] = []
    gate = asyncio.Event()

    async def work(key: str, _poked: float | None) -> None:
        passes.append(key)
        await gate.wait()

    workers = Coalescer(work, "test")
    workers.poke("run")
    await asyncio.sleep(0)  # the first pass starts and waits at the gate
    for _ in range(100):
        workers.poke("run")
    gate.set()
    await asyncio.wait_for(asyncio.gather(*workers._workers.values()), timeout=5)
    assert passes == ["run", "run"], "one pass for the first poke, one for all 100 that came meanwhile"


async def test_a_failed_pass_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coalesce, "RETRY_DELAYS", (0.01,))
    attempts = 0
    done = asyncio.Event()

    async def work(key: str, _poked: float | None) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("transient")
        done.set()

    workers = Coalescer(work, "test")
    workers.poke("pipeline")
    await asyncio.wait_for(done.wait(), timeout=5)
    assert attempts == 3
    await workers.close()


async def test_a_wakeup_can_be_armed_again_after_it_fired() -> None:
    seen: list[str] = []

    async def work(key: str, _poked: float | None) -> None:
        seen.append(key)

    workers = Coalescer(work, "test")
    workers.poke_later("run", 0.01)
    assert workers.has_wakeup("run")
    while not seen:
        await asyncio.sleep(0.005)
    assert not workers.has_wakeup("run")
    await workers.close()
