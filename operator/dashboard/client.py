"""The dashboard's API client: aiohttp, with credentials from the official client's configuration loader.

The official ``kubernetes`` package knows every kubeconfig dialect (exec plugins, client certificates,
in-cluster tokens that the kubelet rotates); its loader fills a ``Configuration`` and this client asks it
for the headers before each request, so refreshed tokens are used. Requests themselves are aiohttp, so
watches and followed logs are plain coroutines that stop the moment a page closes. Only GET is ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp


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


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class InClusterConfiguration:
    """A pod's service account, read the way ``Configuration`` is: the operator image that runs the
    dashboard in a cluster does not install the official client, and needs nothing of it but this."""

    host: str
    folder: Path = SERVICE_ACCOUNT
    verify_ssl: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    proxy: str | None = None
    tls_server_name: str | None = None

    @property
    def ssl_ca_cert(self) -> str:
        return str(self.folder / "ca.crt")

    def auth_settings(self) -> dict[str, dict[str, str]]:
        # Read on every request: the kubelet rotates the projected token (about hourly).
        token = (self.folder / "token").read_text(encoding="utf-8").strip()
        return {"BearerToken": {"in": "header", "key": "authorization", "value": f"Bearer {token}"}}


def in_cluster() -> tuple[InClusterConfiguration, str] | None:
    """The pod's configuration and namespace, or None outside a pod."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (SERVICE_ACCOUNT / "token").is_file():
        return None
    try:
        namespace = (SERVICE_ACCOUNT / "namespace").read_text(encoding="utf-8").strip() or "default"
    except OSError:
        namespace = "default"
    return InClusterConfiguration(host=f"https://{f'[{host}]' if ':' in host else host}:{port}"), namespace


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, str]:
    """(configuration, default namespace): in a pod its service account (unless a kubeconfig is named),
    else the kubeconfig through the official client, which knows every dialect of it."""
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and (pod := in_cluster()) is not None:
        return pod
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise ConfigError(
            "no service account here, and reading a kubeconfig needs the kubernetes package"
        ) from None
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c.get("name") == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except (ConfigException, FileNotFoundError, TypeError) as kube_error:
        pod = in_cluster()
        if pod is None:
            raise ConfigError(
                f"no cluster configured ({kube_error}): set KUBECONFIG or run inside a cluster"
            ) from None
        return pod
    return configuration, namespace


def ssl_context(configuration: Any) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig says: its CA (the loader writes inline data to files), client certificate, or
    no verification when it says ``insecure-skip-tls-verify``."""
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def auth_headers(configuration: Any) -> dict[str, str]:
    """The headers the configuration authenticates with, refreshed through its hook (exec plugins, the
    in-cluster token file) when the token has expired."""
    headers = {}
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    return headers


class ApiClient:
    """GET, list, watch and log streams against one API server."""

    def __init__(self, configuration: Any) -> None:
        self._configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._ssl = ssl_context(configuration) if self.host.startswith("https") else False
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _headers(self) -> dict[str, str]:
        # An exec credential plugin may run a process to refresh the token: not on the event loop.
        return await asyncio.to_thread(auth_headers, self._configuration)

    @contextlib.asynccontextmanager
    async def _get(
        self, path: str, params: Mapping[str, str], *, timeout: float | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        assert self._session is not None, "use the client as an async context manager"
        request_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        options: dict[str, Any] = {}
        if getattr(self._configuration, "tls_server_name", None):  # kubeconfig's tls-server-name
            options["server_hostname"] = self._configuration.tls_server_name
        if self._configuration.proxy:
            options["proxy"] = self._configuration.proxy
        async with self._session.get(
            self.host + path,
            params=dict(params),
            headers=await self._headers(),
            ssl=self._ssl,
            timeout=request_timeout,
            **options,
        ) as response:
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
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async with self._get(path, params) as response:
            async for chunk in response.content.iter_any():
                text = decoder.decode(chunk)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
