"""The only module that talks to the Kubernetes API (through pykube-ng).

Every write here is idempotent, because the operator may die between any two calls and do them again:
a create that meets 409 AlreadyExists returns the existing object, a delete that meets 404 is done.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pykube
import requests
from pykube.objects import APIObject, NamespacedAPIObject

from orchest_operator.models import API_VERSION

_JSON = {"Content-Type": "application/json"}
_MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class Pipeline(NamespacedAPIObject):
    version = API_VERSION
    endpoint = "pipelines"
    kind = "Pipeline"


class PipelineRun(NamespacedAPIObject):
    version = API_VERSION
    endpoint = "pipelineruns"
    kind = "PipelineRun"


class PipelineJob(NamespacedAPIObject):
    version = API_VERSION
    endpoint = "pipelinejobs"
    kind = "PipelineJob"


KINDS: dict[tuple[str, str], type[APIObject]] = {
    (cls.version, cls.kind): cls
    for cls in (
        Pipeline,
        PipelineRun,
        PipelineJob,
        pykube.Job,
        pykube.Pod,
        pykube.ConfigMap,
        pykube.Secret,
        pykube.Service,
        pykube.ServiceAccount,
        pykube.Deployment,
        pykube.Role,
        pykube.RoleBinding,
    )
}


def client() -> pykube.HTTPClient:
    """The HTTP client for the configured cluster: in-cluster service account, else ``KUBECONFIG`` or
    ``~/.kube/config``. One per configuration, so connections are reused across calls."""
    return _client_for(os.environ.get("KUBECONFIG"))


# Enough pooled connections for the controller's Job-creating threads plus the handlers' own calls;
# requests' default of 10 makes a 200-Job fan-out open and drop connections.
POOL_SIZE = 32


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class TokenFileAdapter(pykube.http.KubernetesHTTPAdapter):
    """Sends the service account token that is in the file now.

    The kubelet rewrites a pod's projected token well before it expires (an hour by default), but
    pykube reads it once. Unless the API server extends old tokens (up to a year, and not every
    cluster does), a long-running operator would then get 401 on every call. A stat per request is
    a few microseconds; the file is read again only when it changed."""

    def __init__(self, config: pykube.KubeConfig, token_file: Path, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.token_file = token_file
        self._seen: tuple[int, int] | None = None  # read it at the first request, whatever pykube read

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.token_file.stat()  # through the kubelet's symlinks: a new token is a new file
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            self.kube_config.user["token"] = self.token_file.read_text(encoding="utf-8")
            self._seen = stamp
        return super().send(request, **kwargs)


@functools.cache
def _client_for(kubeconfig: str | None) -> pykube.HTTPClient:
    # As pykube's ``KubeConfig.from_env``: the pod's service account if there is one, else the kubeconfig.
    pool = {"pool_connections": POOL_SIZE, "pool_maxsize": POOL_SIZE}
    adapter: pykube.http.KubernetesHTTPAdapter
    try:
        config = pykube.KubeConfig.from_service_account(str(SERVICE_ACCOUNT))
    except FileNotFoundError:
        config = pykube.KubeConfig.from_file()
        adapter = pykube.http.KubernetesHTTPAdapter(config, **pool)
    else:
        adapter = TokenFileAdapter(config, SERVICE_ACCOUNT / "token", **pool)
    api = pykube.HTTPClient(config, timeout=30, http_adapter=adapter)
    # requests reads the proxy and CA bundle variables and looks for ~/.netrc on every request (a quarter
    # of its time per request here). The environment does not change while the process runs: resolve
    # them once for the API server, with requests' own rules, and read no netrc (kubectl reads none).
    resolved = api.session.merge_environment_settings(config.cluster["server"], {}, None, None, None)
    api.session.proxies, api.session.verify = resolved["proxies"], resolved["verify"]
    api.session.trust_env = False
    return api


def kind_of(manifest: dict[str, Any]) -> type[APIObject]:
    try:
        return KINDS[(manifest["apiVersion"], manifest["kind"])]
    except KeyError:
        raise ValueError(f"orchest does not manage {manifest['apiVersion']}/{manifest['kind']}") from None


class ForeignObject(Exception):
    """The name is taken by an object another owner controls (e.g. a deleted run's Job the garbage
    collector has not removed yet): adopting it would be wrong, so the caller retries later."""


def _controller_uid(obj: dict[str, Any]) -> str | None:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


# The calls below go through pykube's HTTP client (its kubeconfig, auth and URL rules) but not through its
# object wrappers: ``APIObject`` deep-copies the body it is built from and the body each answer brings,
# which is a quarter of the client's CPU for a Job and most of it for a 200 KB run status.


def _request_kwargs(
    cls: type[APIObject], namespace: str, name: str | None = None, subresource: str | None = None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "version": cls.version,
        "url": "/".join(part for part in (cls.endpoint, name, subresource) if part),
    }
    if issubclass(cls, NamespacedAPIObject):
        kwargs["namespace"] = namespace
    return kwargs


def _body(value: Any) -> str:
    """Compact JSON: a status write is sent as small as it is stored."""
    return json.dumps(value, separators=(",", ":"))


def _checked(api: pykube.HTTPClient, response: requests.Response) -> dict[str, Any]:
    api.raise_for_status(response)
    body: dict[str, Any] = response.json()
    return body


def ensure(api: pykube.HTTPClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create ``manifest``; when it already exists (409) with the same controller, return what is there."""
    cls = kind_of(manifest)
    meta = manifest["metadata"]
    namespace = meta.get("namespace") or api.config.namespace
    response = api.post(**_request_kwargs(cls, namespace), data=_body(manifest), headers=_JSON)
    if response.status_code != 409:
        return _checked(api, response)
    existing = get(api, cls, namespace, meta["name"])
    if existing is None:  # deleted in between: the next pass creates it
        return _checked(api, response)
    if _controller_uid(existing) != _controller_uid(manifest):
        raise ForeignObject(f"{manifest['kind']} {namespace}/{meta['name']} has another owner")
    return existing


def get(api: pykube.HTTPClient, cls: type[APIObject], namespace: str, name: str) -> dict[str, Any] | None:
    response = api.get(**_request_kwargs(cls, namespace, name))
    return None if response.status_code == 404 else _checked(api, response)


def list_objects(
    api: pykube.HTTPClient,
    cls: type[APIObject],
    namespace: str,
    selector: dict[str, str] | None = None,
    fields: str | None = None,
) -> list[dict[str, Any]]:
    """``fields`` is a field selector the server applies; callers must not rely on it to be exact."""
    kwargs = _request_kwargs(cls, namespace)
    params = {}
    if selector:
        params["labelSelector"] = ",".join(f"{k}={v}" for k, v in selector.items())
    if fields:
        params["fieldSelector"] = fields
    if params:
        kwargs["params"] = params
    found = _checked(api, api.get(**kwargs))
    # Lists leave out each item's kind: put it back, so an item reads like the object it is.
    objs = [{"apiVersion": cls.version, "kind": cls.kind, **item} for item in found.get("items") or []]
    if selector:  # not every API server in tests filters; be exact regardless
        objs = [
            o for o in objs if all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
    return objs


def delete(
    api: pykube.HTTPClient,
    cls: type[APIObject],
    namespace: str,
    name: str,
    propagation: str = "Background",
) -> None:
    """Delete if present; ``Background`` propagation lets the garbage collector remove owned pods."""
    response = api.delete(
        **_request_kwargs(cls, namespace, name), data=_body({"propagationPolicy": propagation}), headers=_JSON
    )
    if response.status_code != 404:
        api.raise_for_status(response)


def patch(
    api: pykube.HTTPClient,
    cls: type[APIObject],
    namespace: str,
    name: str,
    body: dict[str, Any],
    *,
    subresource: str | None = None,
) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): maps merge, ``None`` removes a key, lists are replaced."""
    response = api.patch(
        **_request_kwargs(cls, namespace, name, subresource), data=_body(body), headers=_MERGE_PATCH
    )
    return _checked(api, response)


def patch_status(
    api: pykube.HTTPClient,
    cls: type[APIObject],
    namespace: str,
    name: str,
    status: dict[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patch ``status``; with ``resource_version``, only if the object is still at that version
    (else 409 Conflict): the patch was computed from that version and may be wrong for a newer one."""
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return patch(api, cls, namespace, name, body, subresource="status")


def status_code(err: Exception) -> int | None:
    """The HTTP status of a failed call: pykube raises its own error for JSON ``Status`` bodies and
    ``requests``' error for anything else."""
    if isinstance(err, pykube.exceptions.HTTPError):
        return err.code
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code
    return None
