"""The operator's API client: proxy and CA bundle settings are taken from the environment once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchest_operator import kube

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
    kube._client_for.cache_clear()
    yield
    kube._client_for.cache_clear()


def test_the_proxy_for_the_api_server_comes_from_the_environment(
    kubeconfig: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    api = kube.client()
    assert api.session.proxies.get("https") == "http://proxy.example.test:3128"
    assert api.session.trust_env is False, "not read again (nor ~/.netrc) on every request"


def test_no_proxy_bypasses_it(kubeconfig: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", ".example.test")
    assert kube.client().session.proxies == {}


def test_without_proxy_variables_requests_go_direct(kubeconfig: None) -> None:
    assert kube.client().session.proxies == {}


def test_a_ca_bundle_from_the_environment_is_kept(kubeconfig: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    assert kube.client().session.verify == "/etc/ssl/corporate.pem"
