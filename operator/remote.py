"""The CLI's view of a cluster, through the official ``kubernetes`` client and the current kubeconfig.

The operator itself talks through pykube (``kube.py``); the CLI uses the official client because it
already knows every kubeconfig dialect, exec credential plugin and in-cluster set-up users have.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from orchest_operator import naming
from orchest_operator.models import GROUP, VERSION, PipelineRunStatus


class RemoteError(Exception):
    """A cluster problem worth one line to the user."""


def _explain(err: ApiException, what: str) -> RemoteError:
    try:
        message = json.loads(err.body or "{}").get("message") or err.reason
    except ValueError:
        message = err.reason
    if err.status == 404:
        return RemoteError(f"{what} not found")
    return RemoteError(f"{what}: {message} (HTTP {err.status})")


@dataclass
class Cluster:
    namespace: str
    api: client.ApiClient

    @classmethod
    def connect(cls, namespace: str | None = None, kubeconfig: str | None = None) -> Cluster:
        try:
            config.load_kube_config(config_file=kubeconfig)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            default_ns = (active or {}).get("context", {}).get("namespace") or "default"
        except (ConfigException, FileNotFoundError, TypeError):
            try:
                config.load_incluster_config()
            except ConfigException:
                raise RemoteError("no cluster configured: set KUBECONFIG or run inside a cluster") from None
            default_ns = "default"
        return cls(namespace=namespace or default_ns, api=client.ApiClient())

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as err:
            raise _explain(err, f"{plural[:-1]} {name!r} in namespace {self.namespace!r}") from None

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)
        except ApiException as err:
            raise _explain(err, f"creating {plural[:-1]}") from None

    def apply_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the Pipeline, or replace its spec when it exists (runs keep their own snapshot)."""
        name = body["metadata"]["name"]
        try:
            return self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "pipelines", body
            )
        except ApiException as err:
            if err.status != 409:
                raise _explain(err, f"creating pipeline {name!r}") from None
        try:
            return self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "pipelines", name, {"spec": body["spec"]}
            )
        except ApiException as err:
            raise _explain(err, f"updating pipeline {name!r}") from None

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of one of orchest's objects."""
        try:
            return self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, patch
            )
        except ApiException as err:
            raise _explain(err, f"{plural[:-1]} {name!r} in namespace {self.namespace!r}") from None

    def patch_run(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "pipelineruns", name, patch
            )
        except ApiException as err:
            raise _explain(err, f"pipelinerun {name!r} in namespace {self.namespace!r}") from None

    def watch_run(self, name: str, timeout: int | None = None) -> Iterator[PipelineRunStatus]:
        """Statuses of the run as they change, ending once it has finished."""
        current = self.get("pipelineruns", name)
        status = PipelineRunStatus.model_validate(current.get("status") or {})
        yield status
        if status.phase.finished:
            return
        stream = watch.Watch()
        for event in stream.stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "pipelineruns",
            field_selector=f"metadata.name={name}",
            resource_version=current["metadata"].get("resourceVersion"),
            timeout_seconds=timeout,
        ):
            obj = event["object"]
            if obj.get("metadata", {}).get("name") != name:
                continue
            if event["type"] == "DELETED":
                raise RemoteError(f"pipelinerun {name!r} was deleted")
            status = PipelineRunStatus.model_validate(obj.get("status") or {})
            yield status
            if status.phase.finished:
                stream.stop()
                return

    def step_pods(self, run: str, step: str | None = None) -> list[client.V1Pod]:
        selector = f"{naming.LABEL_RUN}={naming.label_value(run)}"
        if step:
            selector += f",{naming.LABEL_STEP}={step}"
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        except ApiException as err:
            raise _explain(err, f"pods of run {run!r}") from None
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def logs(self, pod: str, follow: bool = False) -> Iterator[str]:
        try:
            if not follow:
                yield from self.core.read_namespaced_pod_log(pod, self.namespace).splitlines()
                return
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, follow=True, _preload_content=False
            )
            for line in response.stream():
                yield from line.decode(errors="replace").splitlines()
        except ApiException as err:
            raise _explain(err, f"logs of pod {pod!r}") from None

    def run_pod(self, manifest: dict[str, Any], timeout: float) -> tuple[str, str]:
        """Create a short pod, wait for it to end, and give back its phase and log; the pod is deleted
        whatever happens (it is named by the caller, so a rerun never finds an old one)."""
        name = manifest["metadata"]["name"]
        try:
            self.core.create_namespaced_pod(self.namespace, manifest)
        except ApiException as err:
            raise _explain(err, f"creating pod {name!r}") from None
        try:
            phase = self._wait_pod(name, timeout)
            try:
                log = self.core.read_namespaced_pod_log(name, self.namespace)
            except ApiException as err:
                raise _explain(err, f"log of pod {name!r}") from None
            return phase, log
        finally:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def _wait_pod(self, name: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        stream = watch.Watch()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteError(f"pod {name!r} did not finish within {timeout:.0f}s")
            try:
                for event in stream.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(left)),
                ):
                    pod = event["object"]
                    if pod.metadata.name != name:
                        continue
                    if event["type"] == "DELETED":
                        raise RemoteError(f"pod {name!r} was deleted before it finished")
                    phase = pod.status.phase if pod.status else None
                    if phase in ("Succeeded", "Failed"):
                        stream.stop()
                        return str(phase)
            except ApiException as err:
                raise _explain(err, f"pod {name!r}") from None
