"""``orchest dashboard`` against a real API server: the kubeconfig's TLS and credentials, real watches and
a real kubelet's ``pods/log``."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from typing import Any

from tests.e2e.conftest import Orchest, wait

OK = "import os; print('hello from', os.environ['ORCHEST_STEP'])\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_dashboard_shows_a_run_and_its_step_log(orchest: Orchest, project: Any) -> None:
    claim = project({"ok.py": OK})
    orchest.pipeline("hello", claim, [{"name": "greet", "file": "ok.py"}])
    orchest.run("r", "hello")
    assert orchest.finished("r")["status"]["phase"] == "Succeeded"
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchest_operator.cli",
            "dashboard",
            "-n",
            orchest.namespace,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip().endswith(f"http://127.0.0.1:{port}/")
        base = f"http://127.0.0.1:{port}/runs/{orchest.namespace}/r"
        page = _get(base)
        assert 'data-step="greet" data-phase="Succeeded"' in page
        log = wait(
            lambda: (text := _get(f"{base}/steps/greet/log")) and "hello from greet" in text and text, 60
        )
        assert "event: end" in log
    finally:
        process.terminate()
        process.wait(10)
