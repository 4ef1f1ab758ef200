"""The operator's API clients (pykube's, and the asyncio one of ``aiokube``) and the credentials they share:
proxy and CA bundle settings are taken from the environment once, and in a pod the service account token
is read again whenever the kubelet rotates it."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pykube
import pytest

from orchest_operator import aiokube, kube

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://api.example.test:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    names = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
    for name in (*names, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    _clear()
    yield
    _clear()


def _clear() -> None:
    kube._client_for.cache_clear()
    kube._credentials_for.cache_clear()


def test_the_proxy_for_the_api_server_comes_from_the_environment(
    kubeconfig: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    api = kube.client()
    assert api.session.proxies.get("https") == "http://proxy.example.test:3128"
    assert api.session.trust_env is False, "not read again (nor ~/.netrc) on every request"
    assert kube.credentials().proxy == "http://proxy.example.test:3128", "the asyncio client's too"


def test_no_proxy_bypasses_it(kubeconfig: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", ".example.test")
    assert kube.client().session.proxies == {}
    assert kube.credentials().proxy is None


def test_without_proxy_variables_requests_go_direct(kubeconfig: None) -> None:
    assert kube.client().session.proxies == {}


def test_a_ca_bundle_from_the_environment_is_kept(kubeconfig: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    assert kube.client().session.verify == "/etc/ssl/corporate.pem"
    assert kube.credentials().verify == "/etc/ssl/corporate.pem"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty list and keeps the Authorization header it came with."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"kind":"List","items":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[str | None]]]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def _credentials(url: str, token_file: Path, token: str) -> kube.Credentials:
    """Credentials of ``url`` following ``token_file`` (which holds "first"), with ``token`` in the config as
    pykube's in-cluster config would have it."""
    token_file.write_text("first")
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    return kube.Credentials(config, token_file=kube.TokenFile(token_file, token))


def _client(url: str, token_file: Path, token: str) -> pykube.HTTPClient:
    creds = _credentials(url, token_file, token)
    return pykube.HTTPClient(creds.config, http_adapter=kube.CredentialsAdapter(creds))


def _rotate(token_file: Path, token: str) -> None:
    """As the kubelet does: a new file put in place by a rename, never the old one rewritten."""
    fresh = token_file.with_name(token_file.name + ".new")
    fresh.write_text(token)
    os.replace(fresh, token_file)


def test_a_rotated_service_account_token_is_sent_from_the_next_request(
    tmp_path: Path, api_server: tuple[str, list[str | None]]
) -> None:
    url, seen = api_server
    api = _client(url, tmp_path / "token", "read-by-pykube-at-start")
    kube.list_objects(api, pykube.Job, "ns")
    kube.list_objects(api, pykube.Job, "ns")
    _rotate(tmp_path / "token", "second")
    kube.list_objects(api, pykube.Job, "ns")
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


def test_a_missing_token_file_keeps_the_last_token(
    tmp_path: Path, api_server: tuple[str, list[str | None]]
) -> None:
    url, seen = api_server
    api = _client(url, tmp_path / "token", "first")
    kube.list_objects(api, pykube.Job, "ns")
    (tmp_path / "token").unlink()  # mid-rotation, for a moment
    kube.list_objects(api, pykube.Job, "ns")
    assert seen == ["Bearer first", "Bearer first"]


def test_the_asyncio_client_follows_a_rotated_token_too(
    tmp_path: Path, api_server: tuple[str, list[str | None]]
) -> None:
    url, seen = api_server
    api = aiokube.APIClient(_credentials(url, tmp_path / "token", "read-by-pykube-at-start"))

    async def calls() -> None:
        await api.list_objects(pykube.Job, "ns")
        _rotate(tmp_path / "token", "second")
        await api.list_objects(pykube.Job, "ns")
        await api.close()

    asyncio.run(calls())
    assert seen == ["Bearer first", "Bearer second"]


def test_in_a_pod_both_clients_follow_the_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, content in (("token", "t"), ("namespace", "orchest-system"), ("ca.crt", "")):
        (tmp_path / name).write_text(content)
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    _clear()
    try:
        api = kube.client()
        adapter = api.session.get_adapter("https://10.0.0.1:443/api")
        assert isinstance(adapter, kube.CredentialsAdapter)
        assert adapter.credentials is kube.credentials() is aiokube.client().credentials
        assert adapter.credentials.token_file is not None
        assert adapter.credentials.token_file.path == tmp_path / "token"
        assert adapter.credentials.verify == str(tmp_path / "ca.crt")
        assert api.config.namespace == "orchest-system" == aiokube.client().namespace
    finally:
        _clear()


def test_outside_a_pod_the_kubeconfig_token_is_used_as_it_is(kubeconfig: None) -> None:
    creds = kube.credentials()
    assert creds.token_file is None
    assert creds.authorization() == "Bearer t"


def test_basic_auth_and_client_certificates_come_from_the_kubeconfig(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://h:6443", "tls-server-name": "api"}}],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "username": "a",
                        "password": "b",
                        "client-certificate": str(cert),
                        "client-key": str(key),
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    creds = kube.Credentials(config)
    assert creds.authorization() == "Basic YTpi"
    assert creds.cert == (str(cert), str(key))
    assert creds.tls_server_name == "api"


def test_an_exec_plugins_token_is_kept_until_it_expires(tmp_path: Path) -> None:
    plugin, runs = tmp_path / "plugin", tmp_path / "runs"
    plugin.write_text(
        f"""#!/bin/sh
echo run >> {runs}
echo '{{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
  "status": {{"token": "from-exec", "expirationTimestamp": "2999-01-01T00:00:00Z"}}}}'
"""
    )
    plugin.chmod(0o755)
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://h:6443"}}],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    creds = kube.Credentials(config)
    assert creds.authorization() == creds.authorization() == "Bearer from-exec"
    assert runs.read_text().count("run") == 1, "run once, not on every request"
    assert creds.expire(), "a 401 forgets it"
    assert creds.authorization() == "Bearer from-exec"
    assert runs.read_text().count("run") == 2


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS API server with a self-signed certificate for the name ``api.test`` (not its address)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "ca.crt", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=api.test"]
    names = ["-addext", "subjectAltName=DNS:api.test"]
    subprocess.run(
        ["openssl", *request, *names, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def _tls_credentials(port: int, cluster: dict[str, Any]) -> kube.Credentials:
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}", **cluster}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    return kube.Credentials(config)


def _list_with_asyncio_client(creds: kube.Credentials) -> None:
    async def call() -> None:
        api = aiokube.APIClient(creds)
        try:
            await api.list_objects(pykube.Job, "ns")
        finally:
            await api.close()

    asyncio.run(call())


def test_the_asyncio_client_trusts_the_kubeconfigs_ca_and_server_name(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    _list_with_asyncio_client(
        _tls_credentials(port, {"certificate-authority": str(ca), "tls-server-name": "api.test"})
    )
    assert _Recorder.seen == ["Bearer t"]
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the address is not the certificate's name
        _list_with_asyncio_client(_tls_credentials(port, {"certificate-authority": str(ca)}))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # nor is the CA trusted by default
        _list_with_asyncio_client(_tls_credentials(port, {"tls-server-name": "api.test"}))


def test_an_auth_provider_kubeconfig_is_refused_by_the_asyncio_client_with_a_clear_error() -> None:
    config = pykube.KubeConfig(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://h:6443"}}],
            "users": [{"name": "u", "user": {"auth-provider": {"name": "gcp", "config": {}}}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    with pytest.raises(kube.UnsupportedCredentials, match=r"auth-provider 'gcp'.*exec plugin"):
        aiokube.APIClient(kube.Credentials(config))
