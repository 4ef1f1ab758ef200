"""The operator's synchronous calls to the Kubernetes API (through pykube-ng), and the credentials that both
its clients use (this one and ``aiokube``'s asyncio client, which the run controller's hot path uses).

Every write here is idempotent, because the operator may die between any two calls and do them again:
a create that meets 409 AlreadyExists returns the existing object, a delete that meets 404 is done.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
import subprocess
import tempfile
import time
from datetime import datetime
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


def credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """How to reach and log in to the configured cluster; shared by this client, ``aiokube``'s and the
    dashboard's. A kubeconfig file or context named (``--kubeconfig``, ``--context``) is read even in a
    pod; otherwise the pod's service account comes first, then ``KUBECONFIG`` or ``~/.kube/config``."""
    if kubeconfig is None and context is None:
        return _credentials_for(os.environ.get("KUBECONFIG"))
    return _credentials_for(kubeconfig or os.environ.get("KUBECONFIG"), context, in_cluster=False)


# Enough pooled connections for the controller's Job creates plus the handlers' own calls; requests'
# default of 10 makes a 200-Job fan-out open and drop connections.
POOL_SIZE = 32


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class TokenFile:
    """The service account token that is in the file now.

    The kubelet rewrites a pod's projected token well before it expires (an hour by default), but
    pykube reads it once. Unless the API server extends old tokens (up to a year, and not every
    cluster does), a long-running operator would then get 401 on every call. A stat per request is
    a few microseconds; the file is read again only when it changed. While the file is missing (for a
    moment, mid-rotation), the last token read is kept."""

    def __init__(self, path: Path, token: str | None = None) -> None:
        self.path = path
        self.token = token
        self._seen: tuple[int, int] | None = None  # read it at the first request, whatever pykube read

    def current(self) -> str | None:
        try:
            stat = self.path.stat()  # through the kubelet's symlinks: a new token is a new file
        except OSError:
            return self.token
        stamp = stat.st_ino, stat.st_mtime_ns
        if stamp != self._seen:
            self.token = self.path.read_text(encoding="utf-8").strip()
            self._seen = stamp
        return self.token


class UnsupportedCredentials(Exception):
    """The kubeconfig logs in a way the operator's asyncio client cannot."""


class Credentials:
    """Where the API server is and how to log in to it, in one place for both of the operator's clients
    (pykube's, and the asyncio one of ``aiokube``): the server and its CA bundle, the proxy, the client
    certificate, and the Authorization header, with the in-cluster token re-read when it is rotated and
    an exec plugin's token kept until it expires (as client-go does). A kubeconfig ``auth-provider``
    (gcp, oidc; removed from kubectl in Kubernetes 1.26) is left to pykube's own code."""

    def __init__(
        self,
        config: pykube.KubeConfig,
        *,
        token_file: TokenFile | None = None,
        env_verify: str | bool = True,
        proxies: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.server: str = config.cluster["server"].rstrip("/")
        self.token_file = token_file
        self.proxies = proxies or {}
        cluster, user = config.cluster, config.user
        # The order of pykube's adapter, so both clients trust the same certificates.
        self.verify: str | bool = env_verify
        if os.environ.get("PYKUBE_SSL_CERTIFICATE_AUTHORITY") is not None:
            self.verify = os.environ["PYKUBE_SSL_CERTIFICATE_AUTHORITY"]
        elif "certificate-authority" in cluster:
            self.verify = cluster["certificate-authority"].filename()
        elif "insecure-skip-tls-verify" in cluster:
            self.verify = not cluster["insecure-skip-tls-verify"]
        self.tls_server_name: str | None = cluster.get("tls-server-name")
        self.cert: tuple[str, str] | None = None
        if "client-certificate" in user:
            self.cert = (user["client-certificate"].filename(), user["client-key"].filename())
        self._exec: tuple[str, float] | None = None  # (header, expiry as a time.time())
        self._exec_files: list[Any] = []

    @property
    def proxy(self) -> str | None:
        """The proxy for the API server, resolved once from the environment (``NO_PROXY`` included)."""
        return self.proxies.get(self.server.split(":", 1)[0])

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS for an asyncio client (aiohttp): ``False`` when the kubeconfig skips verification, else a
        context trusting the same CA bundle (a file or, as requests allows, a directory) with the client
        certificate, if any. Built when the session opens: an exec plugin's certificate comes later."""
        if self.verify is False:
            return False
        bundle = self.verify if isinstance(self.verify, str) else None
        in_dir = bundle is not None and os.path.isdir(bundle)
        context = ssl.create_default_context(
            cafile=None if in_dir else bundle, capath=bundle if in_dir else None
        )
        if self.cert is not None:
            context.load_cert_chain(*self.cert)
        return context

    def authorization(self) -> str | None:
        """The Authorization header to send now, or ``None`` (client certificate, or an auth-provider)."""
        user = self.config.user
        if self.token_file is not None:
            token = self.token_file.current()
            if token:
                return f"Bearer {token}"
        if user.get("token"):
            return f"Bearer {user['token']}"
        if "exec" in user:
            return self._exec_authorization(user["exec"])
        if user.get("username") and user.get("password"):
            pair = f"{user['username']}:{user['password']}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        return None

    def expire(self) -> bool:
        """Forget a cached exec credential after a 401; ``True`` when there was one to renew."""
        had, self._exec = self._exec is not None, None
        return had

    def _exec_authorization(self, spec: dict[str, Any]) -> str | None:
        if self._exec is not None and time.time() < self._exec[1]:
            return self._exec[0]
        env = {**os.environ, **{v["name"]: v["value"] for v in spec.get("env") or []}}
        output = subprocess.run(
            [spec["command"], *(spec.get("args") or [])], env=env, check=True, capture_output=True, timeout=60
        ).stdout
        status = json.loads(output).get("status") or {}
        expiry = _parse_expiry(status.get("expirationTimestamp"))
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            self._exec_files = [
                _temp_file(status["clientCertificateData"]),
                _temp_file(status["clientKeyData"]),
            ]
            self.cert = (self._exec_files[0].name, self._exec_files[1].name)
        header = f"Bearer {status['token']}" if status.get("token") else None
        self._exec = (header, expiry) if header else None
        return header


def _parse_expiry(value: str | None) -> float:
    if not value:
        return float("inf")  # no expiry given: kept until a 401
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return stamp - 10  # renewed a little early, so a request in flight does not carry an expired one


def _temp_file(data: str) -> Any:
    handle = tempfile.NamedTemporaryFile("w", suffix=".pem")  # noqa: SIM115 (lives with the credential)
    handle.write(data)
    handle.flush()
    return handle


class CredentialsAdapter(pykube.http.KubernetesHTTPAdapter):
    """pykube's adapter, sending the Authorization header of ``Credentials`` (pykube then adds none of
    its own); an auth-provider kubeconfig, which ``Credentials`` leaves alone, is pykube's to handle."""

    def __init__(self, credentials: Credentials, **kwargs: Any) -> None:
        super().__init__(credentials.config, **kwargs)
        self.credentials = credentials

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        header = self.credentials.authorization()
        if header is not None:
            request.headers["Authorization"] = header
        if self.credentials.cert is not None:
            kwargs["cert"] = self.credentials.cert
        response = super().send(request, **kwargs)
        if response.status_code == 401 and header is not None and self.credentials.expire():
            request.headers["Authorization"] = self.credentials.authorization() or ""
            response = super().send(request, **kwargs)
        return response


@functools.cache
def _credentials_for(
    kubeconfig: str | None, context: str | None = None, *, in_cluster: bool = True
) -> Credentials:
    # As pykube's ``KubeConfig.from_env``: the pod's service account if there is one, else the kubeconfig.
    token_file, config = None, None
    if in_cluster:
        try:
            config = pykube.KubeConfig.from_service_account(str(SERVICE_ACCOUNT))
        except (FileNotFoundError, KeyError):  # no token file, or no KUBERNETES_SERVICE_HOST: not a pod
            pass
        else:
            token_file = TokenFile(SERVICE_ACCOUNT / "token", config.user.get("token"))
    if config is None:
        config = pykube.KubeConfig.from_file(kubeconfig, current_context=context)
        if context is not None and context not in config.contexts:
            raise pykube.exceptions.PyKubeError(f"context {context!r} is not in {config.filepath}")
    # requests reads the proxy and CA bundle variables and looks for ~/.netrc on every request (a quarter
    # of its time per request). The environment does not change while the process runs: resolve them
    # once for the API server, with requests' own rules, and read no netrc (kubectl reads none).
    resolved = requests.Session().merge_environment_settings(config.cluster["server"], {}, None, None, None)
    return Credentials(
        config, token_file=token_file, env_verify=resolved["verify"], proxies=resolved["proxies"]
    )


@functools.cache
def _client_for(kubeconfig: str | None) -> pykube.HTTPClient:
    creds = _credentials_for(kubeconfig)
    adapter = CredentialsAdapter(creds, pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
    api = pykube.HTTPClient(creds.config, timeout=30, http_adapter=adapter)
    api.session.proxies, api.session.verify = dict(creds.proxies), creds.verify
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
    params: dict[str, str] = {}
    if selector:
        params["labelSelector"] = ",".join(f"{k}={v}" for k, v in selector.items())
    if fields:
        params["fieldSelector"] = fields
    if params:
        kwargs["params"] = params
    return listed(cls, _checked(api, api.get(**kwargs)), selector)


def listed(
    cls: type[APIObject], found: dict[str, Any], selector: dict[str, str] | None
) -> list[dict[str, Any]]:
    """The items of a list answer, each with its kind put back (lists leave it out), so an item reads like
    the object it is; filtered by ``selector`` again, since not every API server in tests filters."""
    objs = [{"apiVersion": cls.version, "kind": cls.kind, **item} for item in found.get("items") or []]
    if selector:
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
    return patch(api, cls, namespace, name, status_body(status, resource_version), subresource="status")


def status_body(status: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return body


def status_code(err: Exception) -> int | None:
    """The HTTP status of a failed call: pykube raises its own error for JSON ``Status`` bodies and
    ``requests``' error for anything else."""
    if isinstance(err, pykube.exceptions.HTTPError):
        return err.code
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code
    return None
