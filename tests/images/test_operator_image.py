"""The operator image: its CRDs are the repository's, its default command is the Deployment's, and it runs
as the operator, with the Deployment's container spec, against the emulator of the integration tests
(`--network host`), while the fake kubelet plays the nodes: a diamond runs to Succeeded."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.images.pods import ROOT, PodRun, docker, free_port, image, run_args
from tests.integration.test_run_operator import finished, pipeline, run, start
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

DEPLOYMENT = ROOT / "manifests" / "operator" / "deployment.yaml"
KUBECONFIG = "/etc/orchest/kubeconfig"  # stands in for the service account's in-cluster configuration


def operator_container() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    return pod, {**pod["containers"][0], "image": image("operator")}


def by_name(documents: list[Any]) -> dict[str, Any]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc}


def test_orchest_crds_in_the_image_are_the_repositorys() -> None:
    printed = docker("run", "--rm", "--network=none", "--read-only", image("operator"), "crds").stdout
    files = sorted((ROOT / "manifests" / "crds").glob("*.yaml"))
    committed = [yaml.safe_load(path.read_text()) for path in files]
    assert by_name(list(yaml.safe_load_all(printed))) == by_name(committed)


def test_the_default_command_is_the_deployments_and_serves_what_the_image_exposes() -> None:
    config = json.loads(docker("image", "inspect", image("operator")).stdout)[0]["Config"]
    _, container = operator_container()
    assert config["Entrypoint"] + config["Cmd"] == container["command"] + container["args"]
    exposed = {int(port.split("/")[0]) for port in config["ExposedPorts"]}
    assert exposed == {port["containerPort"] for port in container["ports"]} == {8080, 9090}
    assert "--liveness=http://0.0.0.0:8080/healthz" in config["Cmd"]
    assert config["Cmd"][config["Cmd"].index("--metrics-port") + 1] == "9090"
    assert config["User"] == "1000:1000"


async def fetch(url: str) -> str | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return await response.text() if response.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_the_image_runs_a_diamond_as_the_operator(
    cluster: Cluster, fake_kubelet, tmp_path: Path
) -> None:
    pod, container = operator_container()
    # Host networking makes the pod's ports this machine's: move them to free loopback ports. A pod reads
    # the Lease's namespace from its service account, which this container has none of: name it.
    health, metrics = free_port(), free_port()
    args = [arg.replace("0.0.0.0:8080/", f"127.0.0.1:{health}/") for arg in container["args"]]
    args[args.index("--metrics-port") + 1] = str(metrics)
    args.append("--leader-elect-resource-namespace=orchest-system")
    kubeconfig = tmp_path / "operator-kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    how = PodRun(
        network="host",
        args=args,
        env={"KUBECONFIG": KUBECONFIG},
        options=["--mount", f"type=bind,source={kubeconfig},target={KUBECONFIG},readonly"],
    )
    name = f"orchest-operator-test-{secrets.token_hex(4)}"
    await asyncio.to_thread(docker, "run", "--detach", "--name", name, *run_args(pod, container, how))
    ok = False
    try:
        assert await wait_for(lambda: fetch(f"http://127.0.0.1:{health}/healthz"), timeout=60, interval=0.2)
        await fake_kubelet(job_complete_delay=0.05)
        await start(cluster, pipeline(), run())
        assert await wait_for(lambda: finished(cluster), timeout=60) == "Succeeded"

        async def counted() -> str | None:
            text = await fetch(f"http://127.0.0.1:{metrics}/metrics") or ""
            return text if 'orchest_runs_finished_total{phase="Succeeded"} 1.0' in text else None

        assert "orchest_steps_started_total 4.0" in await wait_for(counted, timeout=10, interval=0.2)
        ok = True
    finally:
        await asyncio.to_thread(docker, "stop", "--time", "20", name, check=False)
        logs = await asyncio.to_thread(docker, "logs", name, check=False, merge=True)
        inspect = ("inspect", "--format", "{{.State.ExitCode}}", name)
        state = await asyncio.to_thread(docker, *inspect, check=False)
        await asyncio.to_thread(docker, "rm", "--force", name, check=False)
        if not ok:
            print(logs.stdout[-6000:])
    assert state.stdout.strip() == "0", logs.stdout[-3000:]  # SIGTERM: a clean stop
