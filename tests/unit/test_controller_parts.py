"""The controller's small parts: the minimal status patch, the coalescing worker, and how it reads and
writes runs (against a stand-in for the API server)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pykube
import pytest

from orchest_operator import coalesce, run_controller
from orchest_operator.builders.job import JobOptions
from orchest_operator.coalesce import Coalescer
from orchest_operator.run_controller import RunController, RunKey, merge_patch
from orchest_operator.runs import Actions


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


class _Api:
    """Stands in for the controller's ``aiokube.APIClient`` (``get``, ``patch_status``): one stored run,
    and a resourceVersion precondition as the real server checks it."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run = copy.deepcopy(run)
        self.patches: list[tuple[dict[str, Any], str | None]] = []

    async def get(self, _cls: object, _ns: str, _name: str) -> dict[str, Any]:
        return copy.deepcopy(self.run)

    async def patch_status(
        self,
        _cls: object,
        _ns: str,
        _name: str,
        status: dict[str, Any],
        *,
        resource_version=None,
    ) -> dict[str, Any]:
        self.patches.append((status, resource_version))
        if resource_version != self.run["metadata"]["resourceVersion"]:
            raise pykube.exceptions.HTTPError(409, "the object has been modified")
        self.run["status"] = {**self.run.get("status", {}), **status}
        self.bump()
        return copy.deepcopy(self.run)

    def bump(self) -> None:
        self.run["metadata"]["resourceVersion"] = str(int(self.run["metadata"]["resourceVersion"]) + 1)


def _controller(monkeypatch: pytest.MonkeyPatch, api: _Api) -> RunController:
    return RunController(
        api=api,  # type: ignore[arg-type]
        options=JobOptions(default_image="x"),
        jobs=lambda _k: (),
        pods=lambda _k: (),
    )


RUN = {"metadata": {"name": "r", "namespace": "ns", "resourceVersion": "5"}, "status": {"phase": "Running"}}


async def test_a_status_write_names_the_version_it_was_computed_from(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Api(RUN)
    written = await _controller(monkeypatch, api)._write_status(("ns", "r"), RUN, {"phase": "Succeeded"})
    assert api.patches == [({"phase": "Succeeded"}, "5")]
    assert written is not None and written["status"]["phase"] == "Succeeded"


async def test_a_write_is_sent_again_when_only_the_spec_moved_on(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Api(RUN)
    api.bump()  # e.g. a label or spec.cancel was written after the operator read the run
    written = await _controller(monkeypatch, api)._write_status(("ns", "r"), RUN, {"phase": "Succeeded"})
    assert [version for _, version in api.patches] == ["5", "6"]
    assert written is not None and written["status"]["phase"] == "Succeeded"


async def test_a_write_computed_from_a_stale_status_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Api(RUN)
    api.run["status"] = {"phase": "Failed"}  # the status itself moved on: this pass decided from old facts
    api.bump()
    written = await _controller(monkeypatch, api)._write_status(("ns", "r"), RUN, {"phase": "Succeeded"})
    assert written is None
    assert api.run["status"] == {"phase": "Failed"}


async def test_the_echo_of_an_own_write_costs_no_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Api(RUN)
    ctl = _controller(monkeypatch, api)
    passes: list[tuple[str, str]] = []

    async def count(key: tuple[str, str], _poked: float | None) -> None:
        passes.append(key)

    ctl._runs = Coalescer(count, "test")
    ctl.run_seen(RUN)
    await asyncio.sleep(0)
    assert passes == [("ns", "r")]
    await ctl._apply(ctl._latest[("ns", "r")], ("ns", "r"), Actions(status={"phase": "Succeeded"}), None)
    assert ctl._latest[("ns", "r")] == api.run, "the next pass reads what the write returned"
    ctl.run_seen(copy.deepcopy(api.run))  # the watch event of that write
    await asyncio.sleep(0)
    assert passes == [("ns", "r")]
    api.bump()  # someone else's edit
    ctl.run_seen(copy.deepcopy(api.run))
    await asyncio.sleep(0)
    assert passes == [("ns", "r")] * 2


async def test_a_pass_whose_write_is_refused_settles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run decided Cancelled from a stale read (its status moved on meanwhile) is not finished: the
    decision is dropped and the run is decided again, never left settled with its Jobs running."""
    run = {**RUN, "metadata": {**RUN["metadata"], "uid": "u1"}, "spec": {"pipelineRef": {"name": "p"}}}
    api = _Api(run)
    api.run["status"] = {"phase": "Running", "startTime": "2026-11-25T00:00:00Z"}
    api.bump()
    ctl = _controller(monkeypatch, api)
    decided: list[str] = []

    async def decide(run: dict[str, Any], _key: RunKey, status: Any) -> tuple[Any, Any, Actions]:
        decided.append(run["metadata"]["resourceVersion"])
        return run, status, Actions(status={**(run.get("status") or {}), "phase": "Cancelled"})

    monkeypatch.setattr(ctl, "_decide", decide)
    ctl._latest[("ns", "r")] = copy.deepcopy(run)  # the stale read: version 5, no status yet
    await ctl._reconcile(("ns", "r"), None)
    assert ("ns", "r") not in ctl._settled
    await asyncio.wait_for(asyncio.gather(*ctl._runs._workers.values()), timeout=5)  # the pass it poked
    assert decided == ["5", "6"], "decided again from the run as it is"
    assert ctl._settled == {("ns", "r"): "u1"} and api.run["status"]["phase"] == "Cancelled"


async def test_an_edit_seen_while_a_status_write_is_on_its_way_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _Api(RUN)
    ctl = _controller(monkeypatch, api)
    write = api.patch_status

    async def write_then_someone_cancels(*args: Any, **kwargs: Any) -> dict[str, Any]:
        written = await write(*args, **kwargs)
        api.run["spec"] = {"cancel": True}
        api.bump()
        ctl.run_seen(copy.deepcopy(api.run))  # its watch event comes first
        return written

    monkeypatch.setattr(api, "patch_status", write_then_someone_cancels)
    ctl._latest[("ns", "r")] = copy.deepcopy(RUN)
    assert await ctl._apply(
        ctl._latest[("ns", "r")], ("ns", "r"), Actions(status={"phase": "Succeeded"}), None
    )
    assert api.patches, "the status was written"
    assert ctl._latest[("ns", "r")]["spec"] == {"cancel": True}, "the next pass reads the cancel"


class _RefusingApi:
    """Creates Jobs until ``room`` is used up, then answers as a full ResourceQuota does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.posts = 0
        self.created: set[str] = set()

    async def ensure(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.posts += 1
        await asyncio.sleep(0.001)
        if self.posts > self.room:
            raise pykube.exceptions.HTTPError(403, "jobs.batch is forbidden: exceeded quota: jobs")
        self.created.add(manifest["metadata"]["name"])
        return manifest


def _job_manifest(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"r-s{i}", "labels": {"orchest.io/step": f"s{i}"}}}


async def test_a_refusing_server_gets_a_window_of_creates_not_one_per_step() -> None:
    api = _RefusingApi(room=10)
    ctl = RunController(
        api=api,  # type: ignore[arg-type]
        options=JobOptions(default_image="x"),
        jobs=lambda _k: (),
        pods=lambda _k: (),
    )
    manifests = [_job_manifest(i) for i in range(500)]
    ctl._in_flight[("ns", "r")] = {m["metadata"]["name"] for m in manifests}
    with pytest.raises(pykube.exceptions.HTTPError, match="exceeded quota"):
        await ctl._create_all(("ns", "r"), manifests)
    assert api.posts <= 10 + 2 * run_controller._CREATE_WINDOW, "the pass is retried with backoff instead"
    # An in-flight Job's step counts as started: the Jobs refused or not sent are not in flight, so the
    # retried pass creates them.
    assert ctl._in_flight[("ns", "r")] == api.created, "only the Jobs created are in flight"


async def test_all_of_a_passs_jobs_are_created_when_none_is_refused() -> None:
    api = _RefusingApi(room=1000)
    ctl = RunController(
        api=api,  # type: ignore[arg-type]
        options=JobOptions(default_image="x"),
        jobs=lambda _k: (),
        pods=lambda _k: (),
    )
    await ctl._create_all(("ns", "r"), [_job_manifest(i) for i in range(300)])
    assert api.posts == 300


class _DeletingApi(_Api):
    """The server's side of a foreground deletion: the run has its deletionTimestamp, its Job is gone."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(run)
        self.gets = 0
        self.posts: list[str] = []

    async def get(self, _cls: object, _ns: str, _name: str) -> dict[str, Any]:
        self.gets += 1
        return copy.deepcopy(self.run)

    async def ensure(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.posts.append(manifest["metadata"]["labels"]["orchest.io/step"])
        return manifest


def _running_wide_run() -> dict[str, Any]:
    """A run of two independent steps, one at a time, failures continuing: step a runs (as the watch
    last showed the run), b waits for a's slot."""
    from datetime import UTC, datetime

    from orchest_operator.runs import Inputs, Observed, reconcile

    run = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "r", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "5"},
        "spec": {"pipelineRef": {"name": "p"}, "parallelism": 1, "failurePolicy": "Continue"},
    }
    pipe = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {
            "volume": {"claimName": "d"},
            "steps": [{"name": "a", "file": "a.py"}, {"name": "b", "file": "b.py"}],
        },
    }
    first = reconcile(
        Inputs(
            run=run,
            pipeline=pipe,
            observed=Observed(),
            now=datetime.now(UTC),
            options=JobOptions(default_image="x"),
        )
    )
    assert [m["metadata"]["labels"]["orchest.io/step"] for m in first.create] == ["a"]
    return {**run, "status": first.status}


@pytest.mark.parametrize("deleting", [False, True])
async def test_a_pass_that_finds_a_job_gone_reads_the_run_and_starts_nothing_if_it_is_being_deleted(
    monkeypatch: pytest.MonkeyPatch, deleting: bool
) -> None:
    """kubectl delete --cascade=foreground: the garbage collector deletes a run's Jobs once the run has its
    deletionTimestamp, but the Job's DELETED event may be handled before the run's own event. Decided
    from the watch-cached run, step a's Job "disappeared": a fails and, failures continuing, b starts."""
    cached = _running_wide_run()
    api = _DeletingApi(cached)
    api.bump()
    if deleting:
        api.run["metadata"]["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    ctl = _controller(monkeypatch, api)  # its Job index is empty: a's Job is gone
    synced: list[tuple[str, str]] = []
    monkeypatch.setattr(ctl, "sync_pipeline", lambda ns, pipeline: synced.append((ns, pipeline)))
    monkeypatch.setattr(run_controller.kopf, "event", lambda *_a, **_k: None)
    key = ("ns", "r")
    ctl._latest[key] = copy.deepcopy(cached)
    await ctl._reconcile(key, None)
    assert api.gets == 1, "the run itself was read before failing the step"
    if deleting:
        assert api.posts == [], "a run being deleted starts no new Job"
        assert key not in ctl._latest and synced == [("ns", "p")]
    else:
        assert api.posts == ["b"], "a run not being deleted goes on: a failed, b starts"
        assert api.run["status"]["steps"]["a"]["phase"] == "Failed"
    await ctl._runs.close()
