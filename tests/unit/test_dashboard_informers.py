"""An informer's list-then-watch loop against a scripted API: resume after a watch ends, list again after
410 Gone, a kind that is not installed, and errors that are retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from orchest_operator.dashboard import informers
from orchest_operator.dashboard.client import ApiError, Resource
from orchest_operator.dashboard.informers import Informer

RUNS = Resource("orchest.io", "v1alpha1", "pipelineruns")


def obj(name: str, rv: str, namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": rv}}


class ScriptedApi:
    """Answers lists and watches from queues the test fills; records what was asked."""

    def __init__(self) -> None:
        self.lists: asyncio.Queue[Any] = asyncio.Queue()
        self.watches: asyncio.Queue[list[dict[str, Any]] | BaseException] = asyncio.Queue()
        self.asked: list[tuple[str, str, dict[str, str]]] = []

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.asked.append(("list", path, dict(params or {})))
        answer = await self.lists.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        self.asked.append(("watch", path, dict(params)))
        events = await self.watches.get()
        if isinstance(events, BaseException):
            raise events
        for event in events:
            yield event
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informers, "ABSENT_RECHECK_SECONDS", 0.01)

    real_sleep = asyncio.sleep

    async def no_sleep(seconds: float) -> None:  # backoffs and rechecks: no waiting in tests
        await real_sleep(0)

    monkeypatch.setattr(informers.asyncio, "sleep", no_sleep)


async def until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)  # patched: one turn of the loop
    raise AssertionError("never happened")


async def test_lists_then_watches_and_resumes_where_the_watch_ended() -> None:
    api = ScriptedApi()
    informer = Informer(api, RUNS, ["team"])  # type: ignore[arg-type]
    seen: list[str] = []
    informer.subscribe(lambda o: seen.append(o["metadata"]["name"]))
    await api.lists.put({"metadata": {"resourceVersion": "5"}, "items": [obj("a", "4")]})
    await api.watches.put(
        [{"type": "ADDED", "object": obj("b", "6")}, {"type": "BOOKMARK", "object": obj("", "9")}]
    )
    await api.watches.put([{"type": "DELETED", "object": obj("a", "10")}])
    informer.start()
    try:
        await until(lambda: len([a for a in api.asked if a[0] == "watch"]) == 3)
        assert informer.synced.is_set() and set(informer.objects) == {"team/b"}
        watches = [a[2]["resourceVersion"] for a in api.asked if a[0] == "watch"]
        assert watches == ["5", "9", "10"], "each watch resumes from the last version seen"
        assert api.asked[0][1] == "/apis/orchest.io/v1alpha1/namespaces/team/pipelineruns"
        assert seen == ["a", "b", "a"]
    finally:
        await informer.stop()


async def test_gone_lists_again_and_drops_what_vanished() -> None:
    api = ScriptedApi()
    informer = Informer(api, RUNS, None)  # type: ignore[arg-type]
    await api.lists.put({"metadata": {"resourceVersion": "5"}, "items": [obj("a", "4"), obj("b", "5")]})
    await api.watches.put([{"type": "ERROR", "object": {"code": 410, "message": "too old"}}])
    await api.lists.put({"metadata": {"resourceVersion": "20"}, "items": [obj("b", "5")]})
    informer.start()
    try:
        await until(
            lambda: len([a for a in api.asked if a[0] == "list"]) == 2 and "team/a" not in informer.objects
        )
        assert set(informer.objects) == {"team/b"}
        assert api.asked[0][1] == "/apis/orchest.io/v1alpha1/pipelineruns"
    finally:
        await informer.stop()


async def test_a_missing_kind_is_absent_and_errors_are_retried() -> None:
    api = ScriptedApi()
    informer = Informer(api, RUNS, ["team"])  # type: ignore[arg-type]
    await api.lists.put(ApiError(404, "the server could not find the requested resource"))
    informer.start()
    try:
        await until(informer.synced.is_set)
        assert informer.absent
        await api.lists.put(ApiError(403, "forbidden"))
        await until(lambda: informer.error is not None)
        assert informer.error == "pipelineruns: forbidden (HTTP 403)"
        await api.lists.put({"metadata": {"resourceVersion": "1"}, "items": [obj("a", "1")]})
        await until(lambda: "team/a" in informer.objects)
        assert not informer.absent and informer.error is None
    finally:
        await informer.stop()


async def test_keep_trims_what_is_stored() -> None:
    api = ScriptedApi()
    informer = Informer(api, RUNS, ["team"], keep=lambda o: {"metadata": o["metadata"], "kept": True})  # type: ignore[arg-type]
    await api.lists.put(
        {"metadata": {"resourceVersion": "1"}, "items": [{**obj("a", "1"), "spec": {"x": 1}}]}
    )
    informer.start()
    try:
        await until(lambda: "team/a" in informer.objects)
        assert informer.objects["team/a"] == {"metadata": obj("a", "1")["metadata"], "kept": True}
    finally:
        await informer.stop()
