"""The emulator's API semantics (tests/support/cluster.py), checked over HTTP as clients see them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import kmock
import kubernetes
import pykube
import pytest

from tests.support.api import ApiError, KubeApi
from tests.support.cluster import Cluster

NS = "emu"
RUNS = "orchest.io/v1alpha1/pipelineruns"


def cm(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "labels": labels or {}}, "data": {"k": "v"}, **extra}


async def collect(stream: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    events = []
    async for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


async def raises(call: Any) -> ApiError:
    with pytest.raises(ApiError) as error:
        await call
    return error.value


async def test_create_stamps_metadata(api: KubeApi) -> None:
    first = await api.create("v1/configmaps", cm("a"))
    second = await api.create(
        "v1/pods", {"metadata": {"generateName": "pod-", "namespace": NS}, "status": {"x": 1}}
    )
    meta = first["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"]) and meta["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert (first["apiVersion"], first["kind"], meta["namespace"]) == ("v1", "ConfigMap", NS)
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert re.fullmatch(r"pod-[bcdfghjklmnpqrstvwxz2456789]{5}", second["metadata"]["name"])
    assert second["status"] == {"phase": "Pending"}  # the server resets status on create


async def test_create_refuses_bad_objects(api: KubeApi) -> None:
    await api.create("v1/configmaps", cm("dup"))
    assert (await raises(api.create("v1/configmaps", cm("dup")))).status == 409
    unnamed = await raises(api.create("v1/configmaps", {"metadata": {"namespace": NS}}))
    assert (unnamed.status, unnamed.message) == (422, "metadata.name or metadata.generateName is required")
    nowhere = await raises(api.create("v1/configmaps", {"metadata": {"name": "x"}}))
    assert (nowhere.status, nowhere.message) == (
        400,
        "ConfigMap is namespaced: metadata.namespace is required",
    )
    assert (await raises(api.create("v1/nodes", {"metadata": {"name": "n"}}))).status == 404


async def test_generation_follows_spec_but_not_status_or_metadata(api: KubeApi) -> None:
    run = {"metadata": {"name": "r", "namespace": NS}, "spec": {"pipelineRef": {"name": "p"}}}
    created = await api.create(RUNS, run)
    labelled = await api.patch(RUNS, "r", {"metadata": {"labels": {"a": "b"}}}, NS)
    with_status = await api.patch_status(RUNS, "r", {"phase": "Running"}, NS)
    ignored = await api.patch(RUNS, "r", {"status": {"phase": "Hacked"}}, NS)
    respecced = await api.patch(RUNS, "r", {"spec": {"pipelineRef": {"name": "q"}}}, NS)
    assert [o["metadata"]["generation"] for o in (created, labelled, with_status, respecced)] == [1, 1, 1, 2]
    assert ignored["status"] == {"phase": "Running"}  # status only changes through /status
    assert ignored["metadata"]["resourceVersion"] == with_status["metadata"]["resourceVersion"]
    assert int(respecced["metadata"]["resourceVersion"]) > int(with_status["metadata"]["resourceVersion"])


async def test_patch_conflicts_and_errors(api: KubeApi) -> None:
    created = await api.create("v1/configmaps", cm("p"))
    rv = created["metadata"]["resourceVersion"]
    changed = await api.patch("v1/configmaps", "p", {"data": {"k": "w"}}, NS)
    test_rv = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]
    failed_test = await raises(
        api.patch("v1/configmaps", "p", [*test_rv, {"op": "add", "path": "/data/x", "value": "1"}], NS)
    )
    assert failed_test.status == 422
    bad_path = await raises(api.patch("v1/configmaps", "p", [{"op": "remove", "path": "/spec/none"}], NS))
    assert bad_path.status == 422
    stale = await raises(
        api.patch("v1/configmaps", "p", {"metadata": {"resourceVersion": rv}, "data": {}}, NS)
    )
    assert (stale.status, stale.reason) == (409, "Conflict")
    current = changed["metadata"]["resourceVersion"]
    ok = await api.patch(
        "v1/configmaps",
        "p",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "add", "path": "/data/x", "value": "1"},
        ],
        NS,
    )
    assert ok["data"] == {"k": "w", "x": "1"}
    applied = await raises(
        api.request(
            "PATCH",
            "/api/v1/namespaces/emu/configmaps/p",
            body={},
            content_type="application/apply-patch+yaml",
        )
    )
    assert applied.status == 415
    assert (await raises(api.patch("v1/configmaps", "nope", {"data": {}}, NS))).status == 404


async def test_a_no_op_patch_changes_nothing(cluster: Cluster, api: KubeApi) -> None:
    created = await api.create("v1/configmaps", cm("same"))
    before = cluster.emulator.resource_version
    again = await api.patch("v1/configmaps", "same", {"data": {"k": "v"}}, NS)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert cluster.emulator.resource_version == before


async def test_finalizers_hold_the_deletion(cluster: Cluster, api: KubeApi) -> None:
    await api.create("v1/configmaps", cm("f", metadata={"name": "f", "namespace": NS, "finalizers": ["x/y"]}))
    deleting = await api.delete("v1/configmaps", "f", NS)
    assert deleting["metadata"]["deletionTimestamp"] and cluster.peek("v1/configmaps", "f", NS) is not None
    added = await raises(api.patch("v1/configmaps", "f", {"metadata": {"finalizers": ["x/y", "z"]}}, NS))
    assert (added.status, added.message) == (
        422,
        "no new finalizers can be added if the object is being deleted",
    )
    await api.patch("v1/configmaps", "f", {"metadata": {"finalizers": None}}, NS)
    assert cluster.peek("v1/configmaps", "f", NS) is None
    await api.create("v1/configmaps", cm("f"))  # the name is free again


async def test_deletion_propagation_policies(cluster: Cluster, api: KubeApi) -> None:
    for name in ("orphaned", "foreground", "background"):
        await api.create("batch/v1/jobs", {"metadata": {"name": name, "namespace": NS}, "spec": {}})
    await api.delete("batch/v1/jobs", "orphaned", NS, propagation_policy=None)  # batch/v1 default: Orphan
    await api.delete("batch/v1/jobs", "foreground", NS, propagation_policy="Foreground")
    await api.delete("batch/v1/jobs", "background", NS)
    finalizers = {
        j["metadata"]["name"]: j["metadata"]["finalizers"] for j in cluster.peek_all("batch/v1/jobs", NS)
    }
    assert finalizers == {"orphaned": ["orphan"], "foreground": ["foregroundDeletion"]}


async def test_watch_resumes_from_a_resource_version(api: KubeApi) -> None:
    await api.create("v1/configmaps", cm("old"))
    _, version = await api.list_with_version("v1/configmaps", NS)
    await api.create("v1/configmaps", cm("new"))
    await api.delete("v1/configmaps", "old", NS)
    resumed = await collect(api.watch("v1/configmaps", NS, resource_version=version), 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == [
        ("ADDED", "new"),
        ("DELETED", "old"),
    ]

    replayed = await collect(api.watch("v1/configmaps", NS), 1)  # no version: the current state first
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replayed] == [("ADDED", "new")]

    initial = await collect(api.watch("v1/configmaps", NS, params={"sendInitialEvents": "true"}), 2)
    assert [e["type"] for e in initial] == ["ADDED", "BOOKMARK"]
    assert initial[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_a_too_old_resource_version_is_gone(cluster: Cluster, api: KubeApi) -> None:
    cluster.emulator.event_log_size = 2
    _, version = await api.list_with_version("v1/configmaps", NS)
    for index in range(5):
        await api.create("v1/configmaps", cm(f"c{index}"))
    [gone] = await collect(api.watch("v1/configmaps", NS, resource_version=version), 1)
    assert (gone["type"], gone["object"]["code"], gone["object"]["reason"]) == ("ERROR", 410, "Expired")


async def test_a_watch_ends_after_its_timeout(api: KubeApi) -> None:
    events = [event async for event in api.watch("v1/configmaps", NS, timeout_seconds=0)]
    assert events == []


async def test_label_and_field_selectors(api: KubeApi) -> None:
    await api.create("v1/configmaps", cm("a", {"app": "x", "tier": "web"}))
    await api.create("v1/configmaps", cm("b", {"app": "y"}))
    await api.create("v1/configmaps", cm("c"))

    async def names(labels: str | None = None, fields: str | None = None) -> list[str]:
        return [
            o["metadata"]["name"] for o in await api.list("v1/configmaps", NS, labels=labels, fields=fields)
        ]

    assert await names("app=x") == ["a"]
    assert await names("app!=x") == ["b", "c"]
    assert await names("app in (x, y),!tier") == ["b"]
    assert await names("app notin (y)") == ["a", "c"]
    assert await names("tier") == ["a"]
    assert await names(fields="metadata.name=c") == ["c"]
    assert await names(fields="metadata.name!=c,metadata.namespace==emu") == ["a", "b"]
    assert (await raises(api.list("v1/configmaps", NS, labels="app in x"))).status == 400

    stream = api.watch("v1/configmaps", NS, labels={"app": "y"})
    await api.create("v1/configmaps", cm("d", {"app": "y"}))
    watched = await collect(stream, 2)
    assert [e["object"]["metadata"]["name"] for e in watched] == ["b", "d"]


async def test_kmock_reactions_still_take_precedence(cluster: Cluster, api: KubeApi) -> None:
    """A user reaction (fault injection) intercepts the request, and the stored state is left alone."""
    cluster.emulator["post", kmock.resource("v1/configmaps")][:1] << 503
    assert (await raises(api.create("v1/configmaps", cm("flaky")))).status == 503
    assert cluster.peek("v1/configmaps", "flaky", NS) is None
    assert (await api.create("v1/configmaps", cm("flaky")))["metadata"]["name"] == "flaky"


async def test_the_request_log_stays_short(cluster: Cluster, api: KubeApi) -> None:
    await api.create("v1/configmaps", cm("log"))
    await asyncio.gather(*(api.patch("v1/configmaps", "log", {"data": {"n": str(i)}}, NS) for i in range(30)))
    assert len(list(cluster.emulator)) == 1  # kmock's own log: only the latest request
    assert cluster.emulator.request_counts["UPDATE v1/configmaps"] == 30
    assert cluster.emulator.journal[-1][1] == "UPDATE v1/configmaps log"


async def test_put_replaces_with_optimistic_concurrency(api: KubeApi) -> None:
    created = await api.create("v1/configmaps", cm("r"))
    replaced = await api.request(
        "PUT", "/api/v1/namespaces/emu/configmaps/r", body={**created, "data": {"n": "1"}}
    )
    assert replaced["data"] == {"n": "1"} and replaced["metadata"]["uid"] == created["metadata"]["uid"]
    stale = await raises(api.request("PUT", "/api/v1/namespaces/emu/configmaps/r", body=created))
    assert stale.status == 409


async def test_clients_find_the_emulator_through_kubeconfig(cluster: Cluster) -> None:
    """The official client and pykube (as kopf logs in with them) and KubeApi.from_kubeconfig all connect."""
    await cluster.api.create("v1/configmaps", cm("seen"))

    def official() -> list[str]:
        listed = kubernetes.client.CoreV1Api().list_namespaced_config_map(NS)
        return [item.metadata.name for item in listed.items]

    def via_pykube() -> list[str]:
        client = pykube.HTTPClient(pykube.KubeConfig.from_env())
        return [item.name for item in pykube.ConfigMap.objects(client, namespace=NS)]

    assert await asyncio.to_thread(official) == ["seen"]
    assert await asyncio.to_thread(via_pykube) == ["seen"]
    async with KubeApi.from_kubeconfig() as api:
        assert [item["metadata"]["name"] for item in await api.list("v1/configmaps", NS)] == ["seen"]


async def test_helpers_refuse_unknown_resources(cluster: Cluster) -> None:
    with pytest.raises(KeyError, match="resource v1/configmap is not registered in the emulator"):
        cluster.peek("v1/configmap", "x", NS)
    with pytest.raises(
        ValueError, match=re.escape("must look like 'v1/pods' or 'batch/v1/jobs', got 'jobs'")
    ):
        await cluster.api.list("jobs")


async def test_pod_logs_are_served_and_followed(cluster: Cluster, api: KubeApi) -> None:
    import aiohttp

    body = {"metadata": {"name": "p", "namespace": NS}, "spec": {"containers": []}}
    pod = await api.create("v1/pods", body)
    base = f"{cluster.url}/api/v1/namespaces/{NS}/pods"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/p/log") as response:
            assert response.status == 400, "a Pending pod's container is waiting to start"
        async with session.get(f"{base}/nope/log") as response:
            assert response.status == 404
        await api.patch_status("v1/pods", "p", {"phase": "Running"}, NS)
        cluster.emulator.write_log(NS, pod["metadata"]["name"], "one\n")
        async with session.get(f"{base}/p/log") as response:
            assert (response.status, await response.text()) == (200, "one\n")
        async with session.get(f"{base}/p/log", params={"follow": "true"}) as response:
            assert await response.content.readline() == b"one\n"
            cluster.emulator.write_log(NS, "p", "two\n")
            assert await response.content.readline() == b"two\n"
            cluster.emulator.write_log(NS, "p", "three\n", finished=True)
            assert await asyncio.wait_for(response.content.read(), 5) == b"three\n", "the stream ends"
