"""The fake kubelet and Job controller (tests/support/kubelet.py), driven through the emulator's API."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.api import KubeApi
from tests.support.cluster import Cluster
from tests.support.kubelet import FakeKubelet, KubeletFactory, Outcome
from tests.support.waiting import wait_for

NS = "kube"
JOBS = "batch/v1/jobs"


def job(name: str, **spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"template": template, **spec}}


def conditions(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    found = cluster.peek(JOBS, name, NS) or {}
    return [(c["type"], c["reason"]) for c in (found.get("status") or {}).get("conditions") or []]


def pods(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    listed = cluster.peek_all("v1/pods", NS, labels={"job-name": name})
    return sorted(listed, key=lambda pod: int(pod["metadata"]["resourceVersion"]))


def fail_first(count: int, message: str = "") -> Any:
    seen: dict[str, int] = {}

    def policy(job: Any, pod: Any) -> Outcome:
        name = job["metadata"]["name"]
        seen[name] = seen.get(name, 0) + 1
        succeed = seen[name] > count
        return Outcome(succeed=succeed, message=None if succeed else message or None)

    return policy


async def test_failed_pods_are_retried_until_success(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    await fake_kubelet(job_complete_delay=0.01, outcome=fail_first(2, "try again"))
    await api.create(JOBS, job("retry", backoffLimit=3))
    await wait_for(lambda: ("Complete", "CompletionsReached") in conditions(cluster, "retry"))

    status = cluster.peek(JOBS, "retry", NS)["status"]
    assert (status["failed"], status["succeeded"], status["active"]) == (2, 1, 0)
    assert [c[0] for c in conditions(cluster, "retry")] == ["SuccessCriteriaMet", "Complete"]
    ran = pods(cluster, "retry")
    assert [p["status"]["phase"] for p in ran] == ["Failed", "Failed", "Succeeded"]
    terminated = [p["status"]["containerStatuses"][0]["state"]["terminated"] for p in ran]
    assert [(t["exitCode"], t.get("message")) for t in terminated] == [
        (1, "try again"),
        (1, "try again"),
        (0, None),
    ]


async def test_exceeding_the_backoff_limit_fails_the_job(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    await fake_kubelet(job_complete_delay=0.01, outcome=fail_first(99))
    await api.create(JOBS, job("hopeless", backoffLimit=1))
    await wait_for(lambda: ("Failed", "BackoffLimitExceeded") in conditions(cluster, "hopeless"))

    assert conditions(cluster, "hopeless") == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]
    assert cluster.peek(JOBS, "hopeless", NS)["status"]["failed"] == 2
    assert len(pods(cluster, "hopeless")) == 2


async def test_the_active_deadline_fails_a_running_job(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    await fake_kubelet(run_time=60, job_complete_delay=0.01)
    began = asyncio.get_running_loop().time()
    await api.create(JOBS, job("slow", activeDeadlineSeconds=1, backoffLimit=5))
    await wait_for(lambda: ("Failed", "DeadlineExceeded") in conditions(cluster, "slow"), timeout=3)
    assert asyncio.get_running_loop().time() - began >= 1.0

    assert [c[0] for c in conditions(cluster, "slow")] == ["FailureTarget", "Failed"]
    [pod] = pods(cluster, "slow")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")


async def test_complete_comes_a_delay_after_the_pod_and_in_two_steps(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    _, version = await api.list_with_version(JOBS, NS)
    await fake_kubelet(job_complete_delay=0.3)
    await api.create(JOBS, job("batched"))
    loop = asyncio.get_running_loop()
    await wait_for(lambda: [p for p in pods(cluster, "batched") if p["status"]["phase"] == "Succeeded"])
    succeeded_at = loop.time()
    await wait_for(lambda: ("Complete", "CompletionsReached") in conditions(cluster, "batched"))
    assert loop.time() - succeeded_at >= 0.25

    seen: list[list[str]] = []
    async for event in api.watch(JOBS, NS, resource_version=version):
        seen.append([c["type"] for c in (event["object"].get("status") or {}).get("conditions") or []])
        if "Complete" in seen[-1]:
            break
    assert seen[-2:] == [["SuccessCriteriaMet"], ["SuccessCriteriaMet", "Complete"]]


async def test_existing_jobs_and_selectors(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    await api.create(
        JOBS, {**job("mine"), "metadata": {"name": "mine", "namespace": NS, "labels": {"run": "me"}}}
    )
    await api.create(JOBS, job("other"))
    await fake_kubelet(
        job_complete_delay=0, labels={"run": "me"}, outcome=lambda j, p: Outcome(run_time=0.05)
    )
    await wait_for(lambda: ("Complete", "CompletionsReached") in conditions(cluster, "mine"))
    assert pods(cluster, "other") == []
    [pod] = pods(cluster, "mine")
    assert pod["spec"]["nodeName"] == "fake-node"
    assert pod["metadata"]["labels"]["app"] == "mine"


async def test_stop_cancels_running_pods_promptly(cluster: Cluster, api: KubeApi) -> None:
    kubelet = await FakeKubelet(api, run_time=60).start()
    await api.create(JOBS, job("endless"))
    await wait_for(lambda: [p for p in pods(cluster, "endless") if p["status"]["phase"] == "Running"])
    await asyncio.wait_for(kubelet.stop(), 1)
    assert [p["status"]["phase"] for p in pods(cluster, "endless")] == ["Running"]


async def test_a_job_deleted_while_running_is_dropped(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    endless = Outcome(run_time=30)
    kubelet = await fake_kubelet(
        job_complete_delay=0,
        outcome=lambda j, p: endless if j["metadata"]["name"] == "dropped" else Outcome(),
    )
    await api.create(JOBS, job("dropped"))
    await wait_for(lambda: [p for p in pods(cluster, "dropped") if p["status"]["phase"] == "Running"])
    await api.delete(JOBS, "dropped", NS)
    await api.create(JOBS, job("next"))  # the kubelet carries on with other Jobs
    await wait_for(lambda: ("Complete", "CompletionsReached") in conditions(cluster, "next"))
    assert kubelet.errors == []
    assert [p["status"]["phase"] for p in pods(cluster, "dropped")] == ["Running"]  # no GC: left as it was


async def test_garbage_collection_is_explicit(
    cluster: Cluster, api: KubeApi, fake_kubelet: KubeletFactory
) -> None:
    kubelet = await fake_kubelet(job_complete_delay=0)
    owner = await api.create("v1/configmaps", {"metadata": {"name": "owner", "namespace": NS}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    owned = job("owned")
    owned["metadata"]["ownerReferences"] = [reference]
    for created in (owned, job("background"), job("orphaning")):
        await api.create(JOBS, created)
    await wait_for(lambda: all(conditions(cluster, n) for n in ("owned", "background", "orphaning")))

    await api.delete(JOBS, "background", NS)
    await api.delete(JOBS, "orphaning", NS, propagation_policy=None)  # batch/v1 Jobs orphan by default
    await api.delete("v1/configmaps", "owner", NS, propagation_policy="Foreground")
    assert len(pods(cluster, "background")) == 1  # nothing collects garbage by itself
    assert cluster.peek("v1/configmaps", "owner", NS)["metadata"]["finalizers"] == ["foregroundDeletion"]

    deleted = await kubelet.collect_garbage()
    assert sorted(d.split()[0] for d in deleted) == ["batch/v1/jobs", "v1/pods", "v1/pods"]
    assert pods(cluster, "background") == [] and pods(cluster, "owned") == []
    assert cluster.peek(JOBS, "owned", NS) is None and cluster.peek("v1/configmaps", "owner", NS) is None
    assert cluster.peek(JOBS, "orphaning", NS) is None
    [kept] = pods(cluster, "orphaning")
    assert "ownerReferences" not in kept["metadata"]
