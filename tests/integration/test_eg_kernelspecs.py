"""Every kernelspec orchest generates loads in the real Enterprise Gateway (from PyPI, in ``.venv-eg``).

EG runs in its own interpreter (its pins clash with ours), so ``eg_probe.py`` runs there as a subprocess
and reports what EG's configured kernelspec manager lists and whether the proxy classes import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchest_operator import session
from orchest_operator.builders import session as build
from orchest_operator.cli import main
from orchest_operator.models import ProcessProxy
from orchest_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EG_PYTHON = ROOT / ".venv-eg" / "bin" / "python"
PROBE = Path(__file__).with_name("eg_probe.py")
JUPYTER_SHARE = "/usr/local/share/jupyter/"
PROXIES = "enterprise_gateway.services.processproxies"
PROXY_CLASS = {
    ProcessProxy.KUBERNETES: f"{PROXIES}.k8s.KubernetesProcessProxy",
    ProcessProxy.DOCKER: f"{PROXIES}.docker_swarm.DockerProcessProxy",
    ProcessProxy.DOCKER_SWARM: f"{PROXIES}.docker_swarm.DockerSwarmProcessProxy",
}

pytestmark = pytest.mark.skipif(
    not EG_PYTHON.exists(),
    reason=f"Enterprise Gateway venv missing: run `make .venv-eg/.installed` ({EG_PYTHON})",
)


def probe(jupyter_path: Path, eg_args: list[str]) -> dict[str, Any]:
    assert eg_args[:2] == ["jupyter", "enterprisegateway"]
    env = {**os.environ, "JUPYTER_PATH": str(jupyter_path), "JUPYTER_DATA_DIR": str(jupyter_path / "user")}
    done = subprocess.run(
        [str(EG_PYTHON), str(PROBE), *eg_args[2:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=jupyter_path,  # not the repo root, whose operator/ would shadow the stdlib module
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def mount_like_kubelet(eg_deployment: dict[str, Any], config_map: dict[str, Any], share: Path) -> None:
    """Place the ConfigMap's keys where the EG container sees them, following its volume and mounts."""
    pod = eg_deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == build.KERNELSPEC_VOLUME)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key_at = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    for mount in pod["containers"][0]["volumeMounts"]:
        if mount["name"] == build.KERNELSPEC_VOLUME:
            target = share / mount["mountPath"].removeprefix(JUPYTER_SHARE)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(config_map["data"][key_at[mount["subPath"]]])


@pytest.mark.parametrize("proxy", list(ProcessProxy))
def test_operator_kernelspecs_load_in_real_eg(tmp_path: Path, proxy: ProcessProxy) -> None:
    spec = {
        "volume": {"claimName": "data"},
        "image": "elyra/kernel-py:3.2.3",
        "session": {
            "enabled": True,
            "processProxy": proxy.value,
            "dockerHostSecret": "swarm",
            "kernels": [
                {"name": "py"},
                {"name": "r-stats", "language": "R", "image": "elyra/kernel-r:3.2.3", "displayName": "R"},
            ],
        },
    }
    pipeline = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u"},
        "spec": spec,
    }
    settings = Settings()
    plan = session.plan(spec, settings)
    assert plan.problems == []
    docker = None if proxy is ProcessProxy.KUBERNETES else build.DockerHost("swarm")
    s = session.session_of(pipeline, plan, settings, docker)
    objs = build.objects(s, "digest")
    eg = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == s.names.eg)
    config_map = next(o for o in objs if o["kind"] == "ConfigMap")
    mount_like_kubelet(eg, config_map, tmp_path)

    report = probe(tmp_path, eg["spec"]["template"]["spec"]["containers"][0]["args"])

    assert sorted(report["kernels"]) == ["py", "r-stats"]  # only this session's kernelspecs are offered
    assert report["default"] == "py"
    for name, image, language in (
        ("py", "elyra/kernel-py:3.2.3", "python"),
        ("r-stats", "elyra/kernel-r:3.2.3", "R"),
    ):
        kernel = report["kernels"][name]
        assert kernel["imported"], kernel["error"]
        assert kernel["class_name"] == PROXY_CLASS[proxy]
        assert kernel["config"] == {"image_name": image}
        assert kernel["language"] == language
    assert report["kernels"]["r-stats"]["display_name"] == "R"


def test_cli_kernelspecs_load_in_real_eg(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    names = {"kubernetes": "on-k8s", "docker": "on-docker", "docker-swarm": "on-swarm"}
    for proxy, name in names.items():
        argv = ["kernelspecs", "--proxy", proxy, "--image", "elyra/kernel-py:3.2.3", "--name", name]
        assert main([*argv, "-o", str(kernels)]) == 0
    options = session.options(Settings())
    report = probe(tmp_path, build.eg_args(sorted(names.values()), options))
    assert sorted(report["kernels"]) == sorted(names.values())
    for name in names.values():
        assert report["kernels"][name]["imported"], report["kernels"][name]["error"]


def test_probe_sees_a_broken_class_name(tmp_path: Path) -> None:
    """The probe itself must be able to fail: a kernelspec naming a missing class is reported."""
    target = tmp_path / "kernels" / "broken" / "kernel.json"
    target.parent.mkdir(parents=True)
    spec = {
        "display_name": "broken",
        "language": "python",
        "argv": [sys.executable],
        "metadata": {"process_proxy": {"class_name": "enterprise_gateway.services.processproxies.k8s.Nope"}},
    }
    target.write_text(json.dumps(spec))
    report = probe(tmp_path, build.eg_args(["broken"], session.options(Settings())))
    assert report["kernels"]["broken"]["imported"] is False
    assert "Nope" in report["kernels"]["broken"]["error"]
