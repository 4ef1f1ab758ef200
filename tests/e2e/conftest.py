"""Real-cluster tests: opt-in with ``ORCHEST_E2E=1`` and a ``KUBECONFIG``; skipped otherwise.

They expect orchest installed in the cluster (the e2e workflow installs the chart on kind, with the images
it built) and a default StorageClass. A guard refuses contexts that do not look disposable unless
``ORCHEST_E2E_CONTEXT`` names the context explicitly.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ENABLED = os.environ.get("ORCHEST_E2E") == "1" and bool(os.environ.get("KUBECONFIG"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="real-cluster test: set ORCHEST_E2E=1 and KUBECONFIG")
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kube() -> Any:
    from kubernetes import client, config

    config.load_kube_config()
    _, active = config.list_kube_config_contexts()
    name = active["name"]
    wanted = os.environ.get("ORCHEST_E2E_CONTEXT")
    if (wanted and name != wanted) or (not wanted and not name.startswith("kind-")):
        pytest.exit(
            f"refusing to run e2e tests against context {name!r}; set ORCHEST_E2E_CONTEXT={name} if meant"
        )
    return client


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    name = f"orchest-e2e-{uuid.uuid4().hex[:6]}"
    core = kube.CoreV1Api()
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


STEP_IMAGE = os.environ.get("ORCHEST_E2E_STEP_IMAGE", "ghcr.io/orchest-operator/orchest-step-runner:e2e")


@pytest.fixture
def project(kube: Any, namespace: str) -> Callable[[dict[str, str]], str]:
    """Make a PVC holding ``files`` (path → text) and return its name: the steps' shared directory."""

    def make(files: dict[str, str]) -> str:
        core, batch = kube.CoreV1Api(), kube.BatchV1Api()
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": "project"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}},
            },
        )
        keys = {f"f{i}": path for i, path in enumerate(files)}
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "seed"}, "data": {k: files[p] for k, p in keys.items()}}
        )
        script = "; ".join(f"cp /seed/{k} /project/{p}" for k, p in keys.items())
        batch.create_namespaced_job(
            namespace,
            {
                "metadata": {"name": "seed"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "securityContext": {"runAsUser": 1000, "fsGroup": 1000, "runAsNonRoot": True},
                            "containers": [
                                {
                                    "name": "seed",
                                    "image": STEP_IMAGE,
                                    "command": ["sh", "-c", script],
                                    "volumeMounts": [
                                        {"name": "project", "mountPath": "/project"},
                                        {"name": "seed", "mountPath": "/seed"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "project", "persistentVolumeClaim": {"claimName": "project"}},
                                {"name": "seed", "configMap": {"name": "seed"}},
                            ],
                        }
                    },
                },
            },
        )
        wait(lambda: (batch.read_namespaced_job("seed", namespace).status.succeeded or 0) >= 1, 180)
        return "project"

    return make


def wait(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Orchest:
    """Pipelines and runs in one namespace through the custom objects API."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.custom = kube.CustomObjectsApi()
        self.batch = kube.BatchV1Api()
        self.namespace = namespace

    def pipeline(self, name: str, claim: str, steps: list[dict[str, Any]], **spec: Any) -> None:
        body = {
            "apiVersion": "orchest.io/v1alpha1",
            "kind": "Pipeline",
            "metadata": {"name": name},
            "spec": {"image": STEP_IMAGE, "volume": {"claimName": claim}, "steps": steps, **spec},
        }
        self.custom.create_namespaced_custom_object(
            "orchest.io", "v1alpha1", self.namespace, "pipelines", body
        )

    def run(self, name: str, pipeline: str, **spec: Any) -> None:
        body = {
            "apiVersion": "orchest.io/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {"name": name},
            "spec": {"pipelineRef": {"name": pipeline}, **spec},
        }
        self.custom.create_namespaced_custom_object(
            "orchest.io", "v1alpha1", self.namespace, "pipelineruns", body
        )

    def get_run(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            "orchest.io", "v1alpha1", self.namespace, "pipelineruns", name
        )

    def finished(self, name: str, timeout: float = 300) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.get_run(name)
            phase = (run.get("status") or {}).get("phase")
            return run if phase in ("Succeeded", "Failed", "Cancelled") else None

        return wait(done, timeout)

    def jobs(self, run: str) -> list[Any]:
        return self.batch.list_namespaced_job(
            self.namespace, label_selector=f"orchest.io/pipeline-run={run}"
        ).items


@pytest.fixture
def orchest(kube: Any, namespace: str) -> Orchest:
    return Orchest(kube, namespace)
