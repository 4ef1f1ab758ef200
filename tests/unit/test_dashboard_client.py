"""The dashboard's API client: credentials from the official client's configuration, asked for before
each request (tokens rotate), errors with the API server's message, watch lines, and streamed text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from kubernetes import client as kube

from orchest_operator.dashboard import client as client_module
from orchest_operator.dashboard.client import ApiClient, ApiError, Resource, auth_headers, ssl_context


def test_resource_paths() -> None:
    pods, runs = Resource("", "v1", "pods"), Resource("orchest.io", "v1alpha1", "pipelineruns")
    assert pods.path() == "/api/v1/pods" and pods.path("a") == "/api/v1/namespaces/a/pods"
    assert runs.path("a") == "/apis/orchest.io/v1alpha1/namespaces/a/pipelineruns"


def test_credentials_come_from_the_configuration_each_time() -> None:
    configuration = kube.Configuration()
    tokens = iter(["Bearer one", "Bearer two"])
    configuration.refresh_api_key_hook = lambda c: c.api_key.update(authorization=next(tokens))
    configuration.api_key = {"authorization": "unused"}
    assert auth_headers(configuration) == {"authorization": "Bearer one"}
    assert auth_headers(configuration) == {"authorization": "Bearer two"}
    configuration.verify_ssl = False
    assert ssl_context(configuration) is False


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
    configuration = kube.Configuration(host=f"http://{host}:{port}")
    configuration.api_key = {"authorization": "Bearer t"}
    try:
        async with ApiClient(configuration) as client:
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


def test_in_a_pod_the_service_account_is_read_on_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("orchest-system")
    monkeypatch.setattr(client_module, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    configuration, namespace = client_module.load_configuration()
    assert (configuration.host, namespace) == ("https://10.96.0.1:443", "orchest-system")
    configuration.folder = tmp_path
    assert configuration.ssl_ca_cert == str(tmp_path / "ca.crt")
    assert auth_headers(configuration) == {"authorization": "Bearer first"}
    (tmp_path / "token").write_text("rotated")
    assert auth_headers(configuration) == {"authorization": "Bearer rotated"}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert client_module.in_cluster() is None


def test_the_dashboard_imports_only_what_the_operator_image_installs() -> None:
    """In a cluster the dashboard runs the operator's image, which has no official client."""
    from tests.unit.test_locks import imports_with_only

    modules = ["orchest_operator.dashboard.server", "orchest_operator.cli.dashboard"]
    done = imports_with_only("operator", modules, "import kubernetes")
    assert done.returncode != 0 and "kubernetes is not in the image" in done.stderr, "the check is real"
    assert imports_with_only("operator", modules).returncode == 0
