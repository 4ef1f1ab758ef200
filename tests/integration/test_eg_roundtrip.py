"""A real round trip on loopback: jupyter-server -> Enterprise Gateway -> kernel, and back over a websocket.

EG (from ``.venv-eg``) and jupyter-server (from ``.venv``) run as processes with exactly the command lines
and environment the operator's builders produce for their Deployments (``eg_args``/``eg_env`` and
``server_args``/``gateway_env``); only the listen address, the root directory and the kernelspec differ.
The kernelspec is local (ipykernel in ``.venv-eg``) because there is no cluster to start kernel pods in.
``secretKeyRef`` entries are resolved from the token Secret the operator would create.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from orchest_operator import session
from orchest_operator.builders import session as build
from orchest_operator.models import ProcessProxy, Volume
from orchest_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EG_BIN = ROOT / ".venv-eg" / "bin"
SERVER_BIN = ROOT / ".venv" / "bin"
KERNEL = "local-py"
NAMESPACE, PIPELINE = "team-a", "demo"
STARTUP_TIMEOUT = 30.0
REPLY_TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(
    not (EG_BIN / "python").exists(),
    reason=f"Enterprise Gateway venv missing: run `make .venv-eg/.installed` ({EG_BIN})",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve(env: list[dict[str, Any]], secret: dict[str, Any]) -> dict[str, str]:
    """What the kubelet does with the env list: literal values, and secretKeyRef read from ``secret``."""
    resolved = {}
    for entry in env:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            resolved[entry["name"]] = entry["value"]
        else:
            assert ref["name"] == secret["metadata"]["name"]
            resolved[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return resolved


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT)

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


def wait_http(url: str, headers: dict[str, str], process: Process) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, f"exited early:\n{process.tail()}"
        try:
            if requests.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not up within {STARTUP_TIMEOUT} s:\n{process.tail()}")


def base_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """A clean Jupyter environment: no user config, runtime files under the test's directory."""
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    return {
        **keep,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class Running:
    server_url: str
    eg_url: str
    token: str
    gateway_token: str
    project: Path
    eg: Process


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    settings = Settings()
    options = session.options(settings)
    pipeline = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": PIPELINE, "namespace": NAMESPACE, "uid": "u"},
    }
    project = tmp_path / "project"
    project.mkdir()
    volume = Volume(claim_name="data", mount_path=str(project))
    s = build.Session(
        pipeline=pipeline, volume=volume, kernels=[], proxy=ProcessProxy.KUBERNETES, options=options
    )
    token, gateway_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    secret = build.token_secret(s, token, gateway_token)

    # EG with one local kernelspec (EG's default LocalProcessProxy: a plain ipykernel subprocess)
    eg_home = tmp_path / "eg"
    kernel_dir = eg_home / "share" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    kernel_dir.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "display_name": "Local Python",
                "language": "python",
                "argv": [str(EG_BIN / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            }
        )
    )
    eg_port, server_port = free_port(), free_port()
    eg_argv = build.eg_args([KERNEL], options, ip="127.0.0.1", port=eg_port)
    eg_env = resolve(build.eg_env(namespace=NAMESPACE, token_secret=s.names.token, options=options), secret)
    eg = Process(
        [str(EG_BIN / eg_argv[0]), *eg_argv[1:]],
        {**base_env(eg_home, EG_BIN), **eg_env, "JUPYTER_PATH": str(eg_home / "share")},
        eg_home,
        tmp_path / "eg.log",
    )
    server = None
    try:
        eg_url = f"http://127.0.0.1:{eg_port}"
        wait_http(f"{eg_url}/api/kernelspecs", {"Authorization": f"token {gateway_token}"}, eg)
        server_env = build.gateway_env(
            gateway_url=eg_url,
            token_secret=s.names.token,
            namespace=NAMESPACE,
            pipeline=PIPELINE,
            volume=volume,
            options=options,
        )
        server_argv = build.server_args(str(project), ip="127.0.0.1", port=server_port)
        if os.geteuid() == 0:  # test machines may run as root; the pod runs as uid 1000
            server_argv.append("--ServerApp.allow_root=True")
        server_home = tmp_path / "server"
        server_home.mkdir()
        server = Process(
            [str(SERVER_BIN / server_argv[0]), *server_argv[1:]],
            {**base_env(server_home, SERVER_BIN), **resolve(server_env, secret)},
            project,
            tmp_path / "server.log",
        )
        server_url = f"http://127.0.0.1:{server_port}"
        wait_http(f"{server_url}/api/status", {"Authorization": f"token {token}"}, server)
        yield Running(server_url, eg_url, token, gateway_token, project, eg)
    finally:
        if server is not None:
            server.stop()
        eg.stop()


def _request(ws: websocket.WebSocket, msg_type: str, content: dict[str, object]) -> str:
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": "test",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": "",
    }
    message = {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }
    ws.send(json.dumps(message))
    return msg_id


def wait_until_ready(ws: websocket.WebSocket) -> None:
    """Ask for kernel_info until the kernel answers: a request sent while jupyter-server is still
    connecting its own websocket to the gateway can be lost, as nbclient's wait_for_ready knows."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    ws.settimeout(2.0)
    try:
        while time.monotonic() < deadline:
            msg_id = _request(ws, "kernel_info_request", {})
            try:
                while True:
                    msg = json.loads(ws.recv())
                    if (
                        msg.get("parent_header", {}).get("msg_id") == msg_id
                        and msg["msg_type"] == "kernel_info_reply"
                    ):
                        return
            except websocket.WebSocketTimeoutException:
                continue
    finally:
        ws.settimeout(REPLY_TIMEOUT)
    raise AssertionError(f"the kernel did not answer kernel_info within {REPLY_TIMEOUT} s")


def execute(ws: websocket.WebSocket, code: str) -> str:
    """Run ``code``; collect its stdout until both the shell reply and the iopub "idle" have come (the two
    channels are not ordered with respect to each other)."""
    msg_id = _request(
        ws, "execute_request", {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    )
    out: list[str] = []
    reply = None
    idle = False
    deadline = time.monotonic() + REPLY_TIMEOUT
    while time.monotonic() < deadline and not (reply and idle):
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise AssertionError(f"kernel error: {msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "execute_reply":
            reply = msg["content"]["status"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    if reply and idle:
        return "".join(out)
    raise AssertionError(f"no complete reply within {REPLY_TIMEOUT} s (reply={reply}, out={out})")


def test_kernel_round_trip_through_jupyter_server_and_enterprise_gateway(running: Running) -> None:
    auth = {"Authorization": f"token {running.token}"}
    server = running.server_url

    # EG refuses anyone without the gateway token; jupyter-server refuses anyone without its own
    assert requests.get(f"{running.eg_url}/api/kernelspecs", timeout=5).status_code == 401
    assert requests.get(f"{server}/api/kernelspecs", timeout=5).status_code == 403
    assert running.token != running.gateway_token

    gateway_auth = {"Authorization": f"token {running.gateway_token}"}
    offered = requests.get(f"{running.eg_url}/api/kernelspecs", headers=gateway_auth, timeout=10).json()
    assert (list(offered["kernelspecs"]), offered["default"]) == ([KERNEL], KERNEL)
    specs = requests.get(f"{server}/api/kernelspecs", headers=auth, timeout=10).json()
    assert list(specs["kernelspecs"]) == [KERNEL]  # what EG offers, seen through the gateway

    # as JupyterLab opens a notebook: a session for its path, which starts a kernel through EG
    notebook = {
        "path": "analysis.ipynb",
        "name": "analysis.ipynb",
        "type": "notebook",
        "kernel": {"name": KERNEL},
    }
    started = requests.post(f"{server}/api/sessions", json=notebook, headers=auth, timeout=60)
    assert started.status_code == 201, f"{started.text}\n{running.eg.tail()}"
    session_id, kernel_id = started.json()["id"], started.json()["kernel"]["id"]
    ws_url = server.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(
        ws_url, header=[f"Authorization: token {running.token}"], timeout=REPLY_TIMEOUT
    )
    try:
        code = (
            "import json, os\n"
            "print(json.dumps([6 * 7] + [os.environ.get(k) for k in"
            " ('KERNEL_USERNAME', 'KERNEL_NAMESPACE', 'KERNEL_WORKING_DIR', 'KERNEL_VOLUME_MOUNTS')]))"
        )
        wait_until_ready(ws)
        answer, username, namespace, working_dir, mounts = json.loads(execute(ws, code))
    finally:
        ws.close()
    assert answer == 42
    # the gateway settings reached the kernel: EG hands it every KERNEL_* variable jupyter-server sends
    assert (username, namespace) == (PIPELINE, NAMESPACE)
    assert working_dir == str(running.project)
    assert json.loads(mounts) == [{"name": build.PROJECT_VOLUME, "mountPath": str(running.project)}]

    deleted = requests.delete(f"{server}/api/sessions/{session_id}", headers=auth, timeout=30)
    assert deleted.status_code == 204
    assert requests.get(f"{server}/api/kernels", headers=auth, timeout=10).json() == []
