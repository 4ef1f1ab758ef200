"""Interactive sessions end to end: the real kopf operator (session handlers) on the emulated cluster.

The test plays the Deployment controller: it marks Deployments Available by patching their status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes_validate
import pytest

from orchest_operator import naming
from orchest_operator.builders.session import SessionNames
from tests.support.cluster import Cluster
from tests.support.operators import RunningOperator
from tests.support.waiting import wait_for

MODULE = "orchest_operator.handlers.session"
WITH_SETTINGS = ["orchest_operator.handlers.startup"]  # the operator's kopf settings (its diff base)
NS = "team-a"
PIPELINES = "orchest.io/v1alpha1/pipelines"
NAMES = SessionNames.of("demo")
Operator = Callable[..., Awaitable[RunningOperator]]
SESSION_OBJECTS = [
    ("v1/serviceaccounts", NAMES.eg),
    ("rbac.authorization.k8s.io/v1/roles", NAMES.eg),
    ("rbac.authorization.k8s.io/v1/rolebindings", NAMES.eg),
    ("v1/configmaps", NAMES.kernelspecs),
    ("apps/v1/deployments", NAMES.eg),
    ("v1/services", NAMES.eg),
    ("v1/secrets", NAMES.token),
    ("apps/v1/deployments", NAMES.server),
    ("v1/services", NAMES.server),
]
AVAILABLE = {
    "availableReplicas": 1,
    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
}


def pipeline(name: str = "demo", **session: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "image": "elyra/kernel-py:3.2.3",
            "volume": {"claimName": "data"},
            "steps": [{"name": "a", "file": "a.py"}],
            "session": {"enabled": True, **session},
        },
    }


def session_of(cluster: Cluster, name: str = "demo") -> dict[str, Any]:
    return ((cluster.peek(PIPELINES, name, NS) or {}).get("status") or {}).get("session") or {}


def phase(cluster: Cluster, expected: str, name: str = "demo") -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        found = session_of(cluster, name)
        return found if found.get("phase") == expected else None

    check.__name__ = f"session phase {expected}"
    return check


def existing(cluster: Cluster) -> list[tuple[str, str]]:
    return [(res, name) for res, name in SESSION_OBJECTS if cluster.peek(res, name, NS)]


async def make_available(cluster: Cluster, *names: str) -> None:
    """What the Deployment controller reports once the current generation has an available pod."""
    for name in names:
        generation = cluster.peek("apps/v1/deployments", name, NS)["metadata"].get("generation", 1)
        status = {**AVAILABLE, "observedGeneration": generation}
        await cluster.api.patch_status("apps/v1/deployments", name, status, NS)


def valid(obj: dict[str, Any]) -> None:
    """kubernetes-validate the object as the operator wrote it (minus what only the server adds)."""
    clean = json.loads(json.dumps(obj))
    clean.pop("status", None)
    kubernetes_validate.validate(clean, "1.31", strict=True)


async def test_enabling_creates_the_session_and_it_becomes_ready(
    cluster: Cluster, operator: Operator
) -> None:
    await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline())

    await wait_for(lambda: len(existing(cluster)) == len(SESSION_OBJECTS), message="every session object")
    owner = cluster.peek(PIPELINES, "demo", NS)["metadata"]["uid"]
    for res, name in SESSION_OBJECTS:
        obj = cluster.peek(res, name, NS)
        valid(obj)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == owner
        assert obj["metadata"]["labels"][naming.LABEL_PIPELINE] == "demo"
    starting = await wait_for(phase(cluster, "Starting"))
    assert starting["url"] == f"http://{NAMES.server}.{NS}.svc:8888"
    assert starting["tokenSecret"] == NAMES.token
    assert starting["kernels"] == ["python"]

    await make_available(cluster, NAMES.eg)
    await make_available(cluster, NAMES.server)
    ready = await wait_for(phase(cluster, "Ready"), message="Ready once both Deployments are Available")
    assert ready["reason"] == "DeploymentsAvailable"

    tokens = cluster.peek("v1/secrets", NAMES.token, NS)["data"].values()
    status_text = json.dumps(cluster.peek(PIPELINES, "demo", NS)["status"])
    assert not any(token in status_text for token in tokens)


async def test_edits_update_objects_but_never_rotate_the_token(cluster: Cluster, operator: Operator) -> None:
    running = await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline(kernels=[{"name": "py"}, {"name": "r", "language": "R"}]))
    await wait_for(lambda: cluster.peek("v1/secrets", NAMES.token, NS))
    token = cluster.peek("v1/secrets", NAMES.token, NS)["data"]
    config_map = await wait_for(lambda: cluster.peek("v1/configmaps", NAMES.kernelspecs, NS))
    assert set(config_map["data"]) == {"py", "r"}

    # drop a kernel: its key leaves the ConfigMap, its mount leaves EG
    await cluster.api.patch(PIPELINES, "demo", {"spec": {"session": {"kernels": [{"name": "py"}]}}}, NS)

    def one_kernel() -> bool:
        data = cluster.peek("v1/configmaps", NAMES.kernelspecs, NS)["data"]
        eg = cluster.peek("apps/v1/deployments", NAMES.eg, NS)
        mounts = eg["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if eg else []
        return set(data) == {"py"} and [m["subPath"] for m in mounts] == ["py/kernel.json"]

    await wait_for(one_kernel, message="kernel r removed")
    await wait_for(lambda: session_of(cluster).get("kernels") == ["py"], message="status offers py only")
    assert cluster.peek("v1/secrets", NAMES.token, NS)["data"] == token

    # a restarted operator resumes the Pipeline and keeps the token too
    await running.stop()
    await operator(MODULE, include=WITH_SETTINGS)
    await make_available(cluster, NAMES.eg, NAMES.server)
    await wait_for(phase(cluster, "Ready"))
    assert cluster.peek("v1/secrets", NAMES.token, NS)["data"] == token


async def test_disabling_removes_every_object_and_stops(cluster: Cluster, operator: Operator) -> None:
    await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline())
    await wait_for(lambda: len(existing(cluster)) == len(SESSION_OBJECTS))

    await cluster.api.patch(PIPELINES, "demo", {"spec": {"session": {"enabled": False}}}, NS)

    stopped = await wait_for(phase(cluster, "Stopped"))
    await wait_for(lambda: existing(cluster) == [], message="no session object left")
    assert stopped["reason"] == "Disabled"
    assert "url" not in stopped or stopped["url"] is None


async def test_a_deleted_deployment_is_recreated(cluster: Cluster, operator: Operator) -> None:
    await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline())
    first = await wait_for(lambda: cluster.peek("apps/v1/deployments", NAMES.server, NS))
    await cluster.api.delete("apps/v1/deployments", NAMES.server, NS)

    def recreated() -> bool:
        again = cluster.peek("apps/v1/deployments", NAMES.server, NS)
        return bool(again) and again["metadata"]["uid"] != first["metadata"]["uid"]

    await wait_for(recreated, message="jupyter-server Deployment recreated")


@pytest.mark.parametrize(
    ("session", "message"),
    [
        (
            {"kernels": [{"name": "py", "image": "Not An Image"}]},
            "spec.session.kernels: kernel 'py': invalid image 'Not An Image'",
        ),
        (
            {"kernels": [{"name": "Bad_Name"}]},
            "spec.session.kernels[0].name 'Bad_Name': must be lowercase letters, digits and '-'",
        ),
    ],
)
async def test_an_invalid_kernel_is_a_clear_status_error(
    cluster: Cluster, operator: Operator, session: dict[str, Any], message: str
) -> None:
    await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline(**session))
    failed = await wait_for(phase(cluster, "Failed"))
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith(message)
    assert existing(cluster) == []


async def test_docker_swarm_needs_the_users_secret(cluster: Cluster, operator: Operator) -> None:
    await operator(MODULE, include=WITH_SETTINGS)
    swarm = {"processProxy": "DockerSwarm", "dockerHostSecret": "swarm"}
    await cluster.api.create(PIPELINES, pipeline(**swarm))
    failed = await wait_for(phase(cluster, "Failed"))
    assert failed["reason"] == "DockerHostSecret"
    assert failed["message"] == (
        f"Secret 'swarm' (spec.session.dockerHostSecret) does not exist in namespace {NS!r}; "
        "create it with a DOCKER_HOST key (and optionally ca.pem, cert.pem, key.pem)"
    )
    assert existing(cluster) == []

    # with the Secret in place, a second Pipeline gets EG pointed at it (and no Role: no API access needed)
    secret = {"metadata": {"name": "swarm", "namespace": NS}, "stringData": {"DOCKER_HOST": "tcp://m:2376"}}
    await cluster.api.create("v1/secrets", secret)
    await cluster.api.create(PIPELINES, pipeline("other", **swarm))
    other = SessionNames.of("other")
    eg = await wait_for(lambda: cluster.peek("apps/v1/deployments", other.eg, NS))
    env = {e["name"]: e for e in eg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DOCKER_HOST"]["valueFrom"]["secretKeyRef"] == {"name": "swarm", "key": "DOCKER_HOST"}
    await wait_for(phase(cluster, "Starting", "other"))
    assert cluster.peek("rbac.authorization.k8s.io/v1/roles", other.eg, NS) is None


async def test_not_ready_within_the_timeout_fails(
    cluster: Cluster, operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHEST_SESSION_TIMEOUT_SECONDS", "1")
    await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline())
    await make_available_when_created(cluster, NAMES.eg)

    failed = await wait_for(phase(cluster, "Failed"), timeout=6, message="Failed after the 1 s timeout")
    assert failed["reason"] == "Timeout"
    assert (
        failed["message"] == f"not Ready within 1 s: Deployment {NAMES.server} has no available replica yet"
    )

    await make_available(cluster, NAMES.server)  # a late Deployment still brings the session up
    await wait_for(phase(cluster, "Ready"))


async def make_available_when_created(cluster: Cluster, name: str) -> None:
    await wait_for(lambda: cluster.peek("apps/v1/deployments", name, NS))
    await make_available(cluster, name)


async def test_a_step_edit_leaves_the_session_alone(cluster: Cluster, operator: Operator) -> None:
    """kopf keeps only what the session is built from: adding a step is no session change (it used to
    reconcile the session and restart a Starting session's clock), and the annotation holds no steps."""
    running = await operator(MODULE, include=WITH_SETTINGS)
    await cluster.api.create(PIPELINES, pipeline())
    await wait_for(phase(cluster, "Starting"))
    steps = [{"name": "a", "file": "a.py"}, {"name": "b", "file": "b.py", "dependsOn": ["a"]}]
    await cluster.api.patch(PIPELINES, "demo", {"spec": {"steps": steps}}, NS)
    # A session edit after it: once its effect shows, kopf has handled the step edit's event too.
    await cluster.api.patch(PIPELINES, "demo", {"spec": {"session": {"kernels": [{"name": "py"}]}}}, NS)
    await wait_for(lambda: session_of(cluster).get("kernels") == ["py"], message="the kernel edit applied")
    await running.stop()

    assert running.output.count("Updating is processed") == 1
    annotations = cluster.peek(PIPELINES, "demo", NS)["metadata"]["annotations"]
    handled = json.loads(annotations["orchest.io/last-handled-configuration"])
    assert set(handled["spec"]) == {"image", "volume", "session"}
