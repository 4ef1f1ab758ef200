"""The jupyter-server image, started as the operator starts it (the session's Deployment from
`builders.session`: command, env with the tokens from the session's Secret, read-only root, uid 1000, the
pipeline volume and an emptyDir /tmp), next to the real Enterprise Gateway of .venv-eg serving this
session's kernelspecs: jupyter-server offers exactly the gateway's kernelspecs, and no local kernel."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from orchest_operator import session
from orchest_operator.builders import session as build
from orchest_operator.settings import Settings
from tests.images.pods import PodRun, docker, free_port, hand_over, image, run_args
from tests.integration.test_eg_kernelspecs import mount_like_kubelet
from tests.integration.test_eg_roundtrip import EG_BIN, Process, base_env, resolve, wait_http

SPEC = {
    "volume": {"claimName": "data", "mountPath": "/project"},
    "image": "elyra/kernel-py:3.2.3",
    "session": {
        "enabled": True,
        "kernels": [
            {"name": "py"},
            {"name": "r-stats", "language": "R", "image": "elyra/kernel-r:3.2.3", "displayName": "R"},
        ],
    },
}
PIPELINE = {
    "apiVersion": "orchest.io/v1alpha1",
    "kind": "Pipeline",
    "metadata": {"name": "demo", "namespace": "team-a", "uid": "u"},
    "spec": SPEC,
}

pytestmark = pytest.mark.skipif(
    not (EG_BIN / "python").exists(), reason="no .venv-eg: make .venv-eg/.installed"
)


def replaced(argv: list[str], option: str, value: object) -> list[str]:
    """``argv`` with ``option=...`` set to ``value`` (the only change: where to listen)."""
    assert any(arg.startswith(f"{option}=") for arg in argv), option
    return [f"{option}={value}" if arg.startswith(f"{option}=") else arg for arg in argv]


def by_name(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"]))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """This session's objects, its token Secret, and the URL of EG running with its kernelspecs."""
    settings = Settings()
    plan = session.plan(SPEC, settings)
    assert plan.problems == []
    s = session.session_of(PIPELINE, plan, settings, None)
    objects = {"items": build.objects(s, "digest"), "server": s.names.server}
    secret = build.token_secret(s, secrets.token_urlsafe(16), secrets.token_urlsafe(16))
    eg = by_name(objects["items"], "Deployment", s.names.eg)
    share = tmp_path / "eg-share"
    mount_like_kubelet(eg, by_name(objects["items"], "ConfigMap"), share)
    container = eg["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    argv = replaced(replaced(container["args"], "--ip", "127.0.0.1"), "--port", port)
    home = tmp_path / "eg-home"
    home.mkdir()
    env = {**base_env(home, EG_BIN), **resolve(container["env"], secret), "JUPYTER_PATH": str(share)}
    process = Process([str(EG_BIN / argv[0]), *argv[1:]], env, home, tmp_path / "eg.log")
    try:
        url = f"http://127.0.0.1:{port}"
        token = resolve(container["env"], secret)["EG_AUTH_TOKEN"]
        wait_http(f"{url}/api/kernelspecs", {"Authorization": f"token {token}"}, process)
        yield objects, secret, url
    finally:
        process.stop()


def test_jupyter_server_offers_the_gateways_kernelspecs(gateway: Any, tmp_path: Path) -> None:
    objects, secret, eg_url = gateway
    server = by_name(objects["items"], "Deployment", objects["server"])
    pod = server["spec"]["template"]["spec"]
    port = free_port()
    container = {
        **pod["containers"][0],
        "image": image("jupyter-server"),
        # Host networking makes the pod's port this machine's: a free loopback port, nothing else.
        "command": replaced(
            replaced(pod["containers"][0]["command"], "--ServerApp.ip", "127.0.0.1"), "--ServerApp.port", port
        ),
    }
    project = tmp_path / "volume"
    project.mkdir()
    hand_over(project)
    how = PodRun(
        claims={"data": project},
        secrets=[secret],
        network="host",
        env={"JUPYTER_GATEWAY_URL": eg_url},  # the session's EG Service, here on loopback
    )
    name = f"orchest-jupyter-test-{secrets.token_hex(4)}"
    docker("run", "--detach", "--name", name, *run_args(pod, container, how))
    try:
        env = resolve(container["env"], secret)
        headers = {"Authorization": f"token {env['JUPYTER_TOKEN']}"}
        url = f"http://127.0.0.1:{port}"
        served = _wait_json(f"{url}/api/kernelspecs", headers, name)
        own = requests.get(
            f"{eg_url}/api/kernelspecs",
            headers={"Authorization": f"token {env['JUPYTER_GATEWAY_AUTH_TOKEN']}"},
            timeout=5,
        ).json()
        assert sorted(served["kernelspecs"]) == sorted(own["kernelspecs"]) == ["py", "r-stats"]
        # jupyter-server takes the gateway's default kernel from its first listing on
        again = requests.get(f"{url}/api/kernelspecs", headers=headers, timeout=5).json()
        assert again["default"] == own["default"] == "py"
        assert served["kernelspecs"]["r-stats"]["spec"]["display_name"] == "R"
        status = requests.get(f"{url}/api/status", headers=headers, timeout=5)
        assert status.status_code == 200
    finally:
        logs = docker("logs", name, check=False, merge=True).stdout
        docker("rm", "--force", name, check=False)
    assert "Traceback" not in logs, logs[-3000:]


def _wait_json(url: str, headers: dict[str, str], container: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, headers=headers, timeout=5)
            if response.status_code == 200:
                return response.json()
        except requests.ConnectionError:
            pass
        state = docker("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip()
        assert state == "true", docker("logs", container, check=False, merge=True).stdout[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer: {docker('logs', container, merge=True).stdout[-3000:]}")


def test_the_image_has_no_kernel_of_its_own() -> None:
    """Every kernel runs through EG; a local one would run in the server's pod, not the pipeline's image."""
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('ipykernel') is not None)"
    options = ("--rm", "--network=none", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "python")
    docker("run", *options, image("jupyter-server"), "-c", check)
    listed = docker("run", *options[:-1], "jupyter", image("jupyter-server"), "kernelspec", "list", "--json")
    assert json.loads(listed.stdout) == {"kernelspecs": {}}
