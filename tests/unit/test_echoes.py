"""Dropping the watch events that echo the operator's own creates, before kopf processes them."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching as kopf_watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing

from orchest_operator import echoes, naming
from orchest_operator.builders.job import JobOptions
from orchest_operator.run_controller import RunController

JOBS = references.Resource(group="batch", version="v1", plural="jobs")


def test_kopf_reads_every_watch_stream_through_the_function_echoes_wraps() -> None:
    """``echoes`` relies on kopf internals: this fails (rather than the filter silently doing nothing)
    when a kopf release moves them."""
    assert "watching.infinite_watch(" in inspect.getsource(queueing.watcher)
    wrapped = echoes._original
    assert wrapped.__module__ == kopf_watching.__name__ and wrapped.__name__ == "infinite_watch"
    assert {"settings", "resource", "namespace"} <= set(inspect.signature(wrapped).parameters)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    events: list[Any] = []

    async def source(**_: Any) -> AsyncIterator[Any]:
        for event in events:
            yield event

    monkeypatch.setattr(echoes, "_original", source)
    monkeypatch.setattr(kopf_watching, "infinite_watch", kopf_watching.infinite_watch)  # undone after
    echoes.install()
    yield events
    echoes.clear()


async def _read(resource: references.Resource) -> list[Any]:
    return [e async for e in kopf_watching.infinite_watch(settings=None, resource=resource, namespace=None)]


async def test_only_the_events_a_filter_recognises_are_dropped(stream: list[Any]) -> None:
    listed = object()  # kopf's own markers (e.g. Bookmark.LISTED) pass untouched
    stream.extend([{"type": "ADDED", "object": {"n": 1}}, {"type": "MODIFIED", "object": {"n": 1}}, listed])
    echoes.skip(("batch", "v1", "jobs"), lambda e: e["type"] == "ADDED")
    assert await _read(JOBS) == [{"type": "MODIFIED", "object": {"n": 1}}, listed]
    pods = references.Resource(group="", version="v1", plural="pods")
    assert len(await _read(pods)) == 3, "other resources are not filtered"


def _job(name: str, run: str, owner: str | None, namespace: str = "ns") -> dict[str, Any]:
    refs = [{"uid": owner, "controller": True}] if owner else []
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {naming.ANNOTATION_RUN: run},
            "ownerReferences": refs,
        }
    }


async def test_own_creates_are_the_added_events_of_jobs_in_flight_for_the_run_that_owns_them() -> None:
    ctl = RunController(
        api=None,  # type: ignore[arg-type]
        options=JobOptions(default_image="x"),
        jobs=lambda _k: (),
        pods=lambda _k: (),
    )
    ctl._latest[("ns", "r")] = {"metadata": {"name": "r", "namespace": "ns", "uid": "u1"}}
    ctl._in_flight[("ns", "r")] = {"r-a"}
    assert ctl.is_own_create({"type": "ADDED", "object": _job("r-a", "r", "u1")})
    assert not ctl.is_own_create({"type": "MODIFIED", "object": _job("r-a", "r", "u1")}), "status news"
    assert not ctl.is_own_create({"type": None, "object": _job("r-a", "r", "u1")}), "a (re)listing"
    assert not ctl.is_own_create({"type": "ADDED", "object": _job("r-a", "r", "u0")}), "an earlier run's"
    assert not ctl.is_own_create({"type": "ADDED", "object": _job("r-b", "r", "u1")}), "not created here"
    assert not ctl.is_own_create({"type": "ADDED", "object": _job("r-a", "r", "u1", "other")})
    ctl.job_deleted("ns", "r-a", _job("r-a", "r", "u1"))
    assert ctl._in_flight[("ns", "r")] == set(), "a Job deleted unseen is no longer in flight"
    await ctl._runs.close()
