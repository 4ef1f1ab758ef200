"""The dashboard's API client: aiohttp, through ``aiokube``'s session, with ``kube.Credentials``.

``kube.Credentials`` is the operator's one reading of a kubeconfig or a pod's service account (CA bundle,
tls-server-name, proxy, client certificates, tokens, basic auth, exec plugins, the in-cluster token
re-read when the kubelet rotates it); ``aiokube.APIClient`` sends each request with the header it gives
then. Watches and followed logs are plain coroutines that stop the moment a page closes. Only GET is
ever sent.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pykube

from orchest_operator import aiokube, kube


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class ConfigError(Exception):
    """No usable kubeconfig or in-cluster configuration."""


@dataclass(frozen=True)
class Resource:
    """A kind the dashboard reads: its API path prefix and plural."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"


def load_configuration(
    kubeconfig: str | None = None, context: str | None = None
) -> tuple[kube.Credentials, str]:
    """(credentials, default namespace): a named kubeconfig file or context, else the pod's service
    account, else ``KUBECONFIG`` or ``~/.kube/config``, as the operator reads them."""
    try:
        credentials = kube.credentials(kubeconfig, context)
        aiokube.APIClient(credentials)  # refuses an auth-provider user here, not at the first request
    except kube.UnsupportedCredentials as err:
        raise ConfigError(str(err)) from None
    except (OSError, KeyError, ValueError, pykube.exceptions.PyKubeError) as err:
        raise ConfigError(f"no cluster configured ({err}): set KUBECONFIG or run inside a cluster") from None
    return credentials, credentials.config.namespace


# Streams (watches, followed logs) run as long as the page that asked; only connecting is bounded.
_STREAM = aiohttp.ClientTimeout(total=None, sock_connect=10)


class ApiClient:
    """GET, list, watch and log streams against one API server."""

    def __init__(self, credentials: kube.Credentials) -> None:
        self.credentials = credentials
        self.host = credentials.server
        self._api = aiokube.APIClient(credentials, timeout=60)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._api.close()

    @contextlib.asynccontextmanager
    async def _get(
        self, path: str, params: Mapping[str, str], *, timeout: float | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        request_timeout = (
            _STREAM if timeout is None else aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        )
        async with self._api.open("GET", path, params=dict(params), timeout=request_timeout) as response:
            if response.status >= 400:
                text = await response.text()
                try:
                    message = json.loads(text).get("message") or response.reason
                except (ValueError, AttributeError):
                    message = text.strip()[:200] or str(response.reason)
                raise ApiError(response.status, str(message))
            yield response

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        async with self._get(path, params or {}, timeout=60) as response:
            return await response.json()

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, until the server ends it."""
        async with self._get(path, {**params, "watch": "true"}) as response:
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def text_stream(self, path: str, params: Mapping[str, str]) -> AsyncIterator[str]:
        """A text body as it arrives (a followed log), decoded as UTF-8 across chunk boundaries."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async with self._get(path, params) as response:
            async for chunk in response.content.iter_any():
                text = decoder.decode(chunk)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
