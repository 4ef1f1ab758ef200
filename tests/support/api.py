"""A small async Kubernetes API client for test tooling.

Test helpers and the fake kubelet run inside the test's event loop, which is also the loop that serves
kmock's emulator: a synchronous client would block the very server it talks to. aiohttp keeps both in one
loop, and the same code talks to a real API server (credentials come from the official client's kubeconfig
loader), so the fake kubelet works unchanged in benchmarks and e2e runs.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

PatchType = Literal["merge", "json", "strategic"]
_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True)
class Resource:
    """A resource addressed the way URLs need it: ``group/version/plural`` (core group: ``v1/plural``)."""

    group: str
    version: str
    plural: str

    @classmethod
    def parse(cls, text: str | Resource) -> Resource:
        if isinstance(text, Resource):
            return text
        parts = text.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "v1":
            return cls("", "v1", parts[1])
        if len(parts) == 3 and all(parts):
            return cls(parts[0], parts[1], parts[2])
        raise ValueError(f"Resource must look like 'v1/pods' or 'batch/v1/jobs', got {text!r}")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.api_version}/{self.plural}"

    def url(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/".join(parts)


class ApiError(Exception):
    """A non-2xx answer, with the fields of the Kubernetes ``Status`` it carried."""

    def __init__(self, status: int, reason: str, message: str, method: str, url: str) -> None:
        super().__init__(f"{method} {url} -> {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeApi:
    """Create/get/list/patch/delete/watch over one aiohttp session.

    ``KubeApi.for_url(url)`` for an unauthenticated server (the emulator), ``KubeApi.from_kubeconfig()``
    for a real one. Use it as an async context manager, or call ``close()``.
    """

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, ssl_context: ssl.SSLContext | bool = True
    ):
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        self._kinds: dict[tuple[str, str], tuple[Resource, bool]] = {}

    @classmethod
    def for_url(cls, url: str, *, headers: Mapping[str, str] | None = None) -> KubeApi:
        return cls(aiohttp.ClientSession(headers=dict(headers or {})), url)

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> KubeApi:
        """Connect with the credentials the official client's loader finds (``KUBECONFIG`` by default).

        The loader resolves tokens, exec plugins and embedded certificates into files; only its result is
        used here, so every auth method it supports works without a second implementation.
        """
        from kubernetes import client, config  # imported lazily: only real clusters need it

        cfg = client.Configuration()
        config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        sent = dict(headers or {})
        token = cfg.get_api_key_with_prefix("authorization")
        if token:
            sent["Authorization"] = token
        ssl_context: ssl.SSLContext | bool = True
        if cfg.host.startswith("https"):
            context_ = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                context_.load_cert_chain(cfg.cert_file, cfg.key_file)
            if not cfg.verify_ssl:
                context_.check_hostname = False
                context_.verify_mode = ssl.CERT_NONE
            ssl_context = context_
        return cls(aiohttp.ClientSession(headers=sent), cfg.host, ssl_context=ssl_context)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(
            method, url, data=data, params=params, headers=headers, ssl=self._ssl
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise _error(response.status, text, method, url)
            return json.loads(text) if text else None

    async def create(self, resource: str | Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``body``; the namespace comes from ``body.metadata.namespace`` (absent: cluster-scoped)."""
        res = Resource.parse(resource)
        namespace = body.get("metadata", {}).get("namespace")
        return await self.request("POST", res.url(namespace), body=dict(body))

    async def get(self, resource: str | Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Fetch one object; raises ``ApiError`` (status 404) when it does not exist."""
        return await self.request("GET", Resource.parse(resource).url(namespace, name))

    async def find(
        self, resource: str | Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """Like ``get``, but ``None`` for a missing object."""
        try:
            return await self.get(resource, name, namespace)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        labels: str | Mapping[str, str] | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        items, _ = await self.list_with_version(resource, namespace, labels=labels, fields=fields)
        return items

    async def list_with_version(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        labels: str | Mapping[str, str] | None = None,
        fields: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Items plus the list's resourceVersion, the point a watch continues from without gaps."""
        res = Resource.parse(resource)
        body = await self.request("GET", res.url(namespace), params=_selectors(labels, fields))
        items: list[dict[str, Any]] = body.get("items") or []
        return items, str(body.get("metadata", {}).get("resourceVersion", ""))

    async def patch(
        self,
        resource: str | Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
    ) -> dict[str, Any]:
        """Patch an object (``subresource='status'`` for status); a list is sent as a JSON patch."""
        res = Resource.parse(resource)
        kind: PatchType = "json" if isinstance(patch, Sequence) else patch_type
        body: Any = [dict(op) for op in patch] if isinstance(patch, Sequence) else dict(patch)
        return await self.request(
            "PATCH", res.url(namespace, name, subresource), body=body, content_type=_CONTENT_TYPES[kind]
        )

    async def patch_status(
        self, resource: str | Resource, name: str, status: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Merge ``status`` into the object's status through the ``status`` subresource."""
        return await self.patch(resource, name, {"status": dict(status)}, namespace, subresource="status")

    async def delete(
        self,
        resource: str | Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = "Background",
    ) -> dict[str, Any] | None:
        """Delete an object; ``None`` if it was already gone.

        ``Background`` by default, like kubectl: a bare API delete of a batch/v1 Job orphans its pods.
        """
        body = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            return await self.request("DELETE", Resource.parse(resource).url(namespace, name), body=body)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def watch(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        labels: str | Mapping[str, str] | None = None,
        fields: str | None = None,
        timeout_seconds: int | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """One raw watch stream: ``{'type': ..., 'object': ...}`` events until the server closes it.

        ``params`` adds query parameters, e.g. ``{"sendInitialEvents": "true"}``.
        """
        res = Resource.parse(resource)
        params = {"watch": "true", **_selectors(labels, fields), **(params or {})}
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        url = self.base_url + res.url(namespace)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._session.get(url, params=params, ssl=self._ssl, timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, await response.text(), "WATCH", url)
            # Read raw chunks: aiohttp's line reader refuses lines over 128 KiB, and a big object is one line.
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def resource_for(self, api_version: str, kind: str) -> tuple[Resource, bool]:
        """The resource serving ``kind`` in ``api_version`` and whether it is namespaced (via discovery)."""
        key = (api_version, kind)
        if key not in self._kinds:
            path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            body = await self.request("GET", path)
            group, _, version = api_version.rpartition("/")
            for entry in body.get("resources", []):
                if "/" not in entry["name"]:
                    found = Resource(group, version, entry["name"])
                    self._kinds[(api_version, entry["kind"])] = (found, bool(entry.get("namespaced")))
            if key not in self._kinds:
                raise ApiError(
                    404, "NotFound", f"no resource serves kind {kind} in {api_version}", "GET", path
                )
        return self._kinds[key]


def _selectors(labels: str | Mapping[str, str] | None, fields: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if labels:
        params["labelSelector"] = (
            labels if isinstance(labels, str) else ",".join(f"{k}={v}" for k, v in labels.items())
        )
    if fields:
        params["fieldSelector"] = fields
    return params


def _error(status: int, text: str, method: str, url: str) -> ApiError:
    try:
        body = json.loads(text)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(status, str(body.get("reason", "")), str(body.get("message", text[:200])), method, url)
