"""The run controller's calls to the Kubernetes API, on the event loop (aiohttp).

A fan-out of 999 steps is 999 Job POSTs as fast as the API server takes them. Through pykube each POST
cost about 0.7 ms of the operator's one core (requests, and a thread hand-off there and back); here it
costs about a third of that, and nothing waits for a thread. The calls and their idempotence are those
of ``kube`` (a create that meets its own object succeeds, a delete of nothing is done, a status write
can name the version it was computed from), and so are the credentials: ``kube.Credentials`` is the one
place that knows the kubeconfig, the rotating in-cluster token, the CA bundle and the proxy.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pykube
from pykube.objects import APIObject, NamespacedAPIObject

from orchest_operator import kube

_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"


def path(
    cls: type[APIObject], namespace: str, name: str | None = None, subresource: str | None = None
) -> str:
    """The URL path of a kind's collection, or of one object (and its subresource), as pykube builds it."""
    base = "/api/v1" if cls.version == "v1" else f"/apis/{cls.version}"
    scope = f"/namespaces/{namespace}" if issubclass(cls, NamespacedAPIObject) else ""
    return "/".join(part for part in (f"{base}{scope}/{cls.endpoint}", name, subresource) if part)


class APIClient:
    """One aiohttp session to the API server (created on first use, on the running loop).

    Failures raise ``pykube.exceptions.HTTPError`` with the server's status and message, as ``kube``'s
    calls do, so callers handle both clients' refusals alike (``kube.status_code``)."""

    def __init__(self, credentials: kube.Credentials, *, timeout: float = 30.0, limit: int = kube.POOL_SIZE):
        provider = credentials.config.user.get("auth-provider")
        if provider:
            # pykube still speaks these; every other Kubernetes client dropped them (kubectl in 1.26).
            raise kube.UnsupportedCredentials(
                f"the kubeconfig's user logs in with auth-provider {provider.get('name')!r}, which the"
                " operator does not support: use the provider's exec plugin instead (e.g."
                " gke-gcloud-auth-plugin, kubelogin)"
            )
        self.credentials = credentials
        self.namespace = credentials.config.namespace
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = True

    def _open(self) -> aiohttp.ClientSession:
        self._ssl = self.credentials.ssl_context()
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": "orchest-operator", "Accept": _JSON},
            trust_env=False,  # proxies were resolved once, in Credentials
        )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url_path: str,
        *,
        body: Any = None,
        content_type: str = _JSON,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, parsed JSON body or None)``; any status comes back, refusals are the caller's."""
        data = None if body is None else kube._body(body).encode()
        async with self.open(
            method, url_path, data=data, content_type=content_type, params=params
        ) as response:
            status, payload = response.status, await response.read()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return status, parsed

    @contextlib.asynccontextmanager
    async def open(
        self,
        method: str,
        url_path: str,
        *,
        data: bytes | None = None,
        content_type: str = _JSON,
        params: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to one request, its body not read yet (a watch, a followed log): sent with the
        credentials' Authorization header, and once more with a new one after a 401 to a stale exec token."""
        session = self._session or self._open()
        creds = self.credentials
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        for attempt in range(2):
            headers = {"Content-Type": content_type} if data is not None else {}
            header = creds.authorization()
            if header is not None:
                headers["Authorization"] = header
            async with session.request(
                method,
                creds.server + url_path,
                data=data,
                headers=headers,
                params=params,
                proxy=creds.proxy,
                server_hostname=creds.tls_server_name,
                **options,
            ) as response:
                if response.status == 401 and attempt == 0 and header is not None and creds.expire():
                    continue  # an exec plugin's token the server no longer takes: get a new one, once
                yield response
                return

    @staticmethod
    def _checked(status: int, parsed: Any) -> dict[str, Any]:
        if status >= 400:
            message = parsed.get("message") if isinstance(parsed, dict) else parsed
            raise pykube.exceptions.HTTPError(status, message or f"HTTP {status}")
        result: dict[str, Any] = parsed
        return result

    async def ensure(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create ``manifest``; when it exists (409) with the same controller, return what is there."""
        cls = kube.kind_of(manifest)
        meta = manifest["metadata"]
        namespace = meta.get("namespace") or self.namespace
        status, parsed = await self.request("POST", path(cls, namespace), body=manifest)
        if status != 409:
            return self._checked(status, parsed)
        existing = await self.get(cls, namespace, meta["name"])
        if existing is None:  # deleted in between: the next pass creates it
            return self._checked(status, parsed)
        if kube._controller_uid(existing) != kube._controller_uid(manifest):
            raise kube.ForeignObject(f"{manifest['kind']} {namespace}/{meta['name']} has another owner")
        return existing

    async def get(self, cls: type[APIObject], namespace: str, name: str) -> dict[str, Any] | None:
        status, parsed = await self.request("GET", path(cls, namespace, name))
        return None if status == 404 else self._checked(status, parsed)

    async def list_objects(
        self,
        cls: type[APIObject],
        namespace: str,
        selector: dict[str, str] | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        """``fields`` is a field selector the server applies; callers must not rely on it to be exact."""
        params: dict[str, str] = {}
        if selector:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in selector.items())
        if fields:
            params["fieldSelector"] = fields
        found = self._checked(*await self.request("GET", path(cls, namespace), params=params or None))
        return kube.listed(cls, found, selector)

    async def delete(
        self, cls: type[APIObject], namespace: str, name: str, propagation: str = "Background"
    ) -> None:
        """Delete if present; ``Background`` propagation lets the garbage collector remove owned pods."""
        body = {"propagationPolicy": propagation}
        status, parsed = await self.request("DELETE", path(cls, namespace, name), body=body)
        if status != 404:
            self._checked(status, parsed)

    async def patch(
        self, cls: type[APIObject], namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386): maps merge, ``None`` removes a key, lists are replaced."""
        url = path(cls, namespace, name)
        return self._checked(*await self.request("PATCH", url, body=body, content_type=_MERGE_PATCH))

    async def patch_status(
        self,
        cls: type[APIObject],
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch ``status``; with ``resource_version``, only if the object is still at that version
        (else 409 Conflict): the patch was computed from that version and may be wrong for a newer one."""
        body = kube.status_body(status, resource_version)
        url = path(cls, namespace, name, "status")
        return self._checked(*await self.request("PATCH", url, body=body, content_type=_MERGE_PATCH))


def client() -> APIClient:
    """An asyncio client of the configured cluster, with the same credentials as ``kube.client()``."""
    return APIClient(kube.credentials())
