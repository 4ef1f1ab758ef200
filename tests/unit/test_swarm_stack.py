"""The Docker Swarm stack runs what the operator's builders generate (it cannot be deployed in CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchest_operator import kernelspecs, session
from orchest_operator.builders import session as build
from orchest_operator.models import Kernel, ProcessProxy
from orchest_operator.settings import Settings

SWARM = Path(__file__).resolve().parents[2] / "manifests" / "swarm"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return yaml.safe_load((SWARM / "stack.yaml").read_text())


def test_commands_are_the_builders(stack: dict[str, Any]) -> None:
    options = session.options(Settings())
    services = stack["services"]
    assert services["enterprise-gateway"]["command"] == build.eg_args(["python"], options)
    assert services["jupyter-server"]["entrypoint"] == build.server_args("/project")
    assert services["enterprise-gateway"]["image"] == Settings().eg_image
    assert services["jupyter-server"]["image"] == Settings().jupyter_server_image


def test_kernels_join_the_stack_network_and_reach_eg_with_its_token(stack: dict[str, Any]) -> None:
    eg, server = stack["services"]["enterprise-gateway"], stack["services"]["jupyter-server"]
    network = stack["networks"]["session"]
    assert network["driver"] == "overlay" and network["attachable"] is True
    assert eg["environment"]["EG_DOCKER_NETWORK"] == network["name"]
    assert server["environment"]["JUPYTER_GATEWAY_URL"] == f"http://enterprise-gateway:{build.EG_PORT}"
    token_ref = "${ORCHEST_GATEWAY_TOKEN:?set ORCHEST_GATEWAY_TOKEN}"
    assert (
        eg["environment"]["EG_AUTH_TOKEN"] == server["environment"]["JUPYTER_GATEWAY_AUTH_TOKEN"] == token_ref
    )
    timeout = str(session.options(Settings()).kernel_launch_timeout_seconds)
    assert (
        eg["environment"]["EG_KERNEL_LAUNCH_TIMEOUT"]
        == server["environment"]["KERNEL_LAUNCH_TIMEOUT"]
        == timeout
    )
    assert [(v["source"], v["target"]) for v in server["volumes"]] == [
        ("${ORCHEST_PIPELINE_DIR:?set ORCHEST_PIPELINE_DIR}", "/project")
    ]


def test_the_committed_kernelspec_is_what_the_cli_writes(stack: dict[str, Any]) -> None:
    config = stack["configs"]["kernelspec-python"]
    target = stack["services"]["enterprise-gateway"]["configs"][0]
    assert target == {"source": "kernelspec-python", "target": f"{build.KERNELSPEC_DIR}/python/kernel.json"}
    committed = (SWARM / config["file"]).read_text()
    expected = kernelspecs.render(Kernel(name="python"), ProcessProxy.DOCKER_SWARM, "elyra/kernel-py:3.2.3")
    assert committed == expected.text()
    assert json.loads(committed)["metadata"]["process_proxy"]["class_name"].endswith(
        "DockerSwarmProcessProxy"
    )
