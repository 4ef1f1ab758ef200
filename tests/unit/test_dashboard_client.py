"""The dashboard's API client: credentials from the operator's ``kube.Credentials``, asked for before
each request (tokens rotate), errors with the API server's message, watch lines, and streamed text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pykube
import pytest
from aiohttp import web

from orchest_operator import kube
from orchest_operator.dashboard import client as client_module
from orchest_operator.dashboard.client import ApiClient, ApiError, Resource


def _credentials(server: str, **cluster: object) -> kube.Credentials:
    return kube.Credentials(
        pykube.KubeConfig(
            {
                "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
                "current-context": "c",
            }
        )
    )


def _auth_headers(credentials: kube.Credentials) -> dict[str, str]:
    return {"authorization": credentials.authorization() or ""}


def test_resource_paths() -> None:
    pods, runs = Resource("", "v1", "pods"), Resource("orchest.io", "v1alpha1", "pipelineruns")
    assert pods.path() == "/api/v1/pods" and pods.path("a") == "/api/v1/namespaces/a/pods"
    assert runs.path("a") == "/apis/orchest.io/v1alpha1/namespaces/a/pipelineruns"


def test_credentials_come_from_the_configuration_each_time(tmp_path: Path) -> None:
    credentials = _credentials("https://h:6443", **{"insecure-skip-tls-verify": True})
    credentials.token_file = kube.TokenFile(tmp_path / "token")
    (tmp_path / "token").write_text("one")
    assert _auth_headers(credentials) == {"authorization": "Bearer one"}
    (tmp_path / "token").write_text("two!")
    assert _auth_headers(credentials) == {"authorization": "Bearer two!"}
    assert credentials.ssl_context() is False


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    seen: list[str] = []

    async def listing(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("authorization", ""))
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            for rv in ("2", "3"):
                event = {"type": "ADDED", "object": {"metadata": {"resourceVersion": rv}}}
                await response.write(json.dumps(event).encode() + b"\n")
            return response
        return web.json_response({"items": [], "metadata": {"resourceVersion": "1"}})

    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "message": 'pods "x" not found'}, status=404)

    async def log(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        text = "héllo\n".encode()
        await response.write(text[:2])  # a chunk that ends inside a character
        await response.write(text[2:])
        return response

    app = web.Application()
    app.router.add_get("/api/v1/pods", listing)
    app.router.add_get("/api/v1/namespaces/a/pods/x/log", missing)
    app.router.add_get("/api/v1/namespaces/a/pods/y/log", log)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with ApiClient(_credentials(f"http://{host}:{port}")) as client:
            client.seen = seen  # type: ignore[attr-defined]
            yield client
    finally:
        await runner.cleanup()


async def test_lists_watches_streams_and_errors(api: ApiClient) -> None:
    assert (await api.get_json("/api/v1/pods"))["metadata"]["resourceVersion"] == "1"
    events = [e async for e in api.watch("/api/v1/pods", {"resourceVersion": "1"})]
    assert [e["object"]["metadata"]["resourceVersion"] for e in events] == ["2", "3"]
    assert api.seen == ["Bearer t", "Bearer t"]  # type: ignore[attr-defined]
    assert "".join([t async for t in api.text_stream("/api/v1/namespaces/a/pods/y/log", {})]) == "héllo\n"
    with pytest.raises(ApiError) as error:
        async for _ in api.text_stream("/api/v1/namespaces/a/pods/x/log", {}):
            pass
    assert (error.value.status, error.value.message) == (404, 'pods "x" not found')


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A pod's service account folder (token, namespace, CA), and no kubeconfig: the credentials' cache
    is emptied around the test."""
    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("orchest-system")
    (tmp_path / "ca.crt").write_text("")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    kube._credentials_for.cache_clear()
    yield tmp_path
    kube._credentials_for.cache_clear()


def test_in_a_pod_the_service_account_is_read_on_every_request(
    pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configuration, namespace = client_module.load_configuration()
    assert (configuration.server, namespace) == ("https://10.96.0.1:443", "orchest-system")
    assert configuration.verify == str(pod / "ca.crt")
    assert _auth_headers(configuration) == {"authorization": "Bearer first"}
    (pod / "token").write_text("rotated")
    assert _auth_headers(configuration) == {"authorization": "Bearer rotated"}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    kube._credentials_for.cache_clear()
    with pytest.raises(client_module.ConfigError, match="no cluster configured"):
        client_module.load_configuration()


def test_a_named_kubeconfig_and_context_are_read_even_in_a_pod(pod: Path) -> None:
    config = pod / "config"
    config.write_text(
        """
clusters: [{name: a, cluster: {server: "https://a:6443"}}, {name: b, cluster: {server: "https://b:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: a, context: {cluster: a, user: u}}
- {name: b, context: {cluster: b, user: u, namespace: team}}
current-context: a
"""
    )
    credentials, namespace = client_module.load_configuration(str(config))
    assert (credentials.server, namespace, credentials.token_file) == ("https://a:6443", "default", None)
    credentials, namespace = client_module.load_configuration(str(config), "b")
    assert (credentials.server, namespace) == ("https://b:6443", "team")
    with pytest.raises(client_module.ConfigError, match="context 'c' is not in"):
        client_module.load_configuration(str(config), "c")
    with pytest.raises(client_module.ConfigError, match="not found"):
        client_module.load_configuration(str(pod / "missing"))
    config.write_text(config.read_text().replace("{token: t}", "{auth-provider: {name: gcp, config: {}}}"))
    kube._credentials_for.cache_clear()
    with pytest.raises(client_module.ConfigError, match="exec plugin"):
        client_module.load_configuration(str(config))


def test_the_dashboard_imports_only_what_the_operator_image_installs() -> None:
    """In a cluster the dashboard runs the operator's image, which has no official client."""
    from tests.unit.test_locks import imports_with_only

    modules = ["orchest_operator.dashboard.server", "orchest_operator.cli.dashboard"]
    done = imports_with_only("operator", modules, "import kubernetes")
    assert done.returncode != 0 and "kubernetes is not in the image" in done.stderr, "the check is real"
    assert imports_with_only("operator", modules).returncode == 0
