"""The harness end to end: the real kopf operator (tests/support/demo_operator.py) on the emulator, with
the fake kubelet running the Jobs it creates."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import demo_operator
from tests.support.api import ApiError
from tests.support.cluster import Cluster
from tests.support.kubelet import KubeletFactory, Outcome
from tests.support.operators import OperatorFactory
from tests.support.waiting import WaitTimeout, wait_for

DEMO = "tests.support.demo_operator"
NS = "demo"
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "labels": demo_operator.SELECTED}, "data": data}


def condition_types(obj: dict[str, Any] | None) -> list[str]:
    return [c["type"] for c in ((obj or {}).get("status") or {}).get("conditions") or []]


def result_of(cluster: Cluster, name: str) -> str | None:
    cm = cluster.peek("v1/configmaps", name, NS) or {}
    return (cm.get("metadata", {}).get("annotations") or {}).get(demo_operator.RESULT)


async def test_create_runs_a_job_to_completion(
    cluster: Cluster, operator: OperatorFactory, fake_kubelet: KubeletFactory
) -> None:
    await operator(DEMO)
    await fake_kubelet(job_complete_delay=0.05)
    cm = await cluster.api.create("v1/configmaps", configmap("one"))

    job = await wait_for(lambda: cluster.peek("batch/v1/jobs", "one-job", NS))
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "one",
            "uid": cm["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert KOPF_FINALIZER in cluster.peek("v1/configmaps", "one", NS)["metadata"]["finalizers"]

    await wait_for(lambda: result_of(cluster, "one"), message="the operator saw the Job finish")
    job = cluster.peek("batch/v1/jobs", "one-job", NS)
    assert condition_types(job) == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["succeeded"] == 1 and job["status"]["active"] == 0
    assert result_of(cluster, "one") == "Complete"

    [pod] = cluster.peek_all("v1/pods", NS, labels={"job-name": "one-job"})
    assert re.fullmatch(r"one-job-[bcdfghjklmnpqrstvwxz2456789]{5}", pod["metadata"]["name"])
    assert pod["metadata"]["labels"] == {
        demo_operator.LABEL: "yes",
        "harness.orchest.io/owner": "one",
        "controller-uid": job["metadata"]["uid"],
        "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
        "job-name": "one-job",
        "batch.kubernetes.io/job-name": "one-job",
    }
    assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0

    with pytest.raises(ApiError) as conflict:
        await cluster.api.create("v1/configmaps", configmap("one"))
    assert (conflict.value.status, conflict.value.reason) == (409, "AlreadyExists")

    def posted() -> list[str]:
        events = cluster.peek_all("v1/events", NS)
        return [e["message"] for e in events if e["involvedObject"]["uid"] == cm["metadata"]["uid"]]

    assert "Handler 'create_job' succeeded." in await wait_for(posted, message="kopf posted its Events")


async def test_a_failed_job_is_reported_with_its_message(
    cluster: Cluster, operator: OperatorFactory, fake_kubelet: KubeletFactory
) -> None:
    await operator(DEMO)
    await fake_kubelet(
        job_complete_delay=0.01, outcome=lambda job, pod: Outcome(succeed=False, message="boom")
    )
    await cluster.api.create("v1/configmaps", configmap("bad", backoffLimit="1"))

    assert await wait_for(lambda: result_of(cluster, "bad")) == "Failed"
    job = cluster.peek("batch/v1/jobs", "bad-job", NS)
    assert condition_types(job) == ["FailureTarget", "Failed"]
    assert job["status"]["failed"] == 2
    pods = cluster.peek_all("v1/pods", NS, labels="job-name=bad-job")
    assert [p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] for p in pods] == [
        "boom"
    ] * 2


async def test_delete_waits_for_the_delete_handler(cluster: Cluster, operator: OperatorFactory) -> None:
    await operator(DEMO)
    deletes = demo_operator.calls["delete"]
    await cluster.api.create("v1/configmaps", configmap("gone"))
    await wait_for(
        lambda: KOPF_FINALIZER in cluster.peek("v1/configmaps", "gone", NS)["metadata"].get("finalizers", [])
    )

    deleted = await cluster.api.delete("v1/configmaps", "gone", NS)
    assert deleted["metadata"]["deletionTimestamp"]
    await wait_for(
        lambda: cluster.peek("v1/configmaps", "gone", NS) is None, message="the finalizer was released"
    )
    assert demo_operator.calls["delete"] == deletes + 1


async def test_a_restarted_operator_does_not_repeat_done_work(
    cluster: Cluster, operator, fake_kubelet
) -> None:
    creates = demo_operator.calls["create"]
    await cluster.api.create("v1/configmaps", configmap("early"))  # before any operator: found by listing
    first = await operator(DEMO)
    await wait_for(lambda: cluster.peek("batch/v1/jobs", "early-job", NS))
    await first.stop()

    await operator(DEMO)
    await fake_kubelet(job_complete_delay=0.01)
    await cluster.api.create("v1/configmaps", configmap("late"))
    await wait_for(lambda: result_of(cluster, "early") and result_of(cluster, "late"))
    assert demo_operator.calls["create"] == creates + 2
    assert sorted(j["metadata"]["name"] for j in cluster.peek_all("batch/v1/jobs", NS)) == [
        "early-job",
        "late-job",
    ]


async def test_a_module_without_handlers_is_refused(cluster: Cluster, operator: OperatorFactory) -> None:
    expected = "no kopf handlers of 'tests.support.waiting' are in the process-wide registry"
    with pytest.raises(LookupError, match=re.escape(expected)):
        await operator("tests.support.waiting")


async def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match=r"not reached within 0.05s: the answer \(last value: 0\)"):
        await wait_for(lambda: 0, 0.05, message="the answer")


async def test_a_handler_for_an_unserved_resource_is_refused(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    cluster.emulator.unregister("batch/v1/jobs")
    expected = "the emulator serves no resource for Selector(group='batch', version='v1', any_name='jobs')"
    with pytest.raises(LookupError, match=re.escape(expected)):
        await operator(DEMO)
