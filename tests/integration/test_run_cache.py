"""Step caching through the real operator: each "pod" runs the real ``orchest step`` on a directory that
plays the pipeline's volume, and the operator records a hit as ``Cached`` from the termination message."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_run_operator import NS, OPERATOR, finished, pipeline, run, start, status
from tests.support.cluster import Cluster
from tests.support.kubelet import Outcome
from tests.support.waiting import wait_for

STEPS = [
    {"name": "make", "file": "make.py", "outputs": ["out/make.txt"]},
    {"name": "use", "file": "use.py", "dependsOn": ["make"]},
]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


def volume_kubelet(volume: Path, started: list[str]):
    """An outcome policy that runs the pod's container command in ``volume``, with the pod's environment,
    and hands back its exit code and termination message as a kubelet would."""

    def outcome(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        container = job["spec"]["template"]["spec"]["containers"][0]
        termination = volume / f".termination-{pod['metadata']['name']}"
        env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
        env["ORCHEST_TERMINATION_LOG"] = str(termination)
        command = [sys.executable, *container["command"][1:]]
        done = subprocess.run(command, cwd=volume, env=env, capture_output=True, text=True, timeout=60)
        started.append(env.get("ORCHEST_STEP", "plan"))
        message = termination.read_text() if termination.exists() else None
        return Outcome(succeed=done.returncode == 0, message=message or done.stdout[-2000:], run_time=0)

    return outcome


async def test_a_rerun_is_cached_from_the_pods_termination_message(
    cluster: Cluster, operator, fake_kubelet, tmp_path: Path
) -> None:
    (tmp_path / "make.py").write_text(
        "import pathlib\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/make.txt').write_text('1')\n"
    )
    (tmp_path / "use.py").write_text("print(open('out/make.txt').read())\n")
    started: list[str] = []
    await operator(OPERATOR)
    kubelet = await fake_kubelet(job_complete_delay=0.05, outcome=volume_kubelet(tmp_path, started))
    await start(cluster, pipeline(steps=STEPS, cache=True), run("r1"))
    assert await wait_for(lambda: finished(cluster, "r1"), timeout=20) == "Succeeded"
    assert started == ["plan", "make", "use"]
    assert status(cluster, "r1")["cachePlan"]["message"] == "0 of 2 step(s) found in the cache"

    # The planning pod finds both steps: neither gets a pod of its own.
    await start(cluster, run("r2"))
    assert await wait_for(lambda: finished(cluster, "r2"), timeout=20) == "Succeeded"
    assert started == ["plan", "make", "use", "plan"]
    steps = status(cluster, "r2")["steps"]
    assert {n: (s["phase"], s.get("cachedFrom")) for n, s in steps.items()} == {
        "make": ("Cached", "r1"),
        "use": ("Cached", "r1"),
    }
    assert steps["use"]["message"] == "same inputs as in run r1"
    assert status(cluster, "r2")["progress"] == "2/2"

    (tmp_path / "use.py").write_text("print('edited', open('out/make.txt').read())\n")
    await start(cluster, run("r3"))
    assert await wait_for(lambda: finished(cluster, "r3"), timeout=20) == "Succeeded"
    phases = {n: s["phase"] for n, s in status(cluster, "r3")["steps"].items()}
    assert phases == {"make": "Cached", "use": "Succeeded"}
    assert started[-2:] == ["plan", "use"]

    # Without the planning pod's answer, each step's own pod finds it in the cache.
    started.clear()
    original = volume_kubelet(tmp_path, started)

    def no_plan(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
        if "ORCHEST_STEP" not in {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}:
            return Outcome(succeed=False, message="planning is broken here")
        return original(job, pod)

    kubelet.outcome = no_plan
    await start(cluster, run("r3b"))
    assert await wait_for(lambda: finished(cluster, "r3b"), timeout=20) == "Succeeded"
    assert started == ["make", "use"]
    steps = status(cluster, "r3b")["steps"]
    assert {n: (s["phase"], s.get("cachedFrom")) for n, s in steps.items()} == {
        "make": ("Cached", "r1"),
        "use": ("Cached", "r3"),
    }
    assert status(cluster, "r3b")["cachePlan"]["phase"] == "Failed"

    await start(cluster, run("r4", cache=False))
    assert await wait_for(lambda: finished(cluster, "r4"), timeout=20) == "Succeeded"
    assert {s["phase"] for s in status(cluster, "r4")["steps"].values()} == {"Succeeded"}


async def test_plan_on_the_cluster_answers_through_a_short_pod(
    cluster: Cluster, operator, fake_kubelet, tmp_path: Path
) -> None:
    """``orchest plan --cluster RUN.yaml``: the CLI starts a pod that mounts the volume; here a small
    stand-in kubelet runs that pod's command on the directory playing the volume and serves its log."""
    from tests.integration.test_cli_cluster import orchest

    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "make.py").write_text(
        "import pathlib\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/make.txt').write_text('1')\n"
    )
    (volume / "use.py").write_text("print(open('out/make.txt').read())\n")
    started: list[str] = []
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=volume_kubelet(volume, started))
    spec = pipeline(steps=STEPS, cache=True)["spec"]
    await start(
        cluster, {**pipeline(steps=STEPS, cache=True), "spec": {**spec, "image": "runner:test"}}, run("r1")
    )
    assert await wait_for(lambda: finished(cluster, "r1"), timeout=20) == "Succeeded"

    logs: dict[str, str] = {}

    def log_of(request: Any) -> str:
        return logs.get(str(request.url.path).split("/")[-2], "")

    cluster.emulator["get", re.compile(r".*/pods/orchest-plan-[0-9a-f]+/log")] << log_of

    async def pod_kubelet() -> None:
        done: set[str] = set()
        while True:
            for pod in cluster.peek_all("v1/pods", NS):
                name = pod["metadata"]["name"]
                if not name.startswith("orchest-plan-") or name in done:
                    continue
                done.add(name)
                container = pod["spec"]["containers"][0]
                assert container["volumeMounts"][0]["readOnly"] is True
                env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
                command = [sys.executable, *container["command"][1:]]
                ran = await asyncio.to_thread(
                    subprocess.run, command, cwd=volume, env=env, capture_output=True, text=True
                )
                logs[name] = ran.stdout + ran.stderr
                phase = "Succeeded" if ran.returncode == 0 else "Failed"
                await cluster.api.patch_status("v1/pods", name, {"phase": phase}, NS)
            await asyncio.sleep(0.02)

    stand_in = asyncio.create_task(pod_kubelet())
    try:
        manifest = tmp_path / "run.yaml"
        manifest.write_text(yaml.safe_dump(run("r2")))
        planned = await orchest("plan", "--cluster", str(manifest), "-n", NS, "--timeout", "15")
        assert planned.code == 0, planned.err
        assert planned.out.splitlines() == [
            "make  cached  from run r1",
            "use   cached  from run r1",
            "0 to run, 2 cached",
        ]
        (volume / "use.py").write_text("print('edited')\n")
        edited = tmp_path / "edited.yaml"
        edited.write_text(yaml.safe_dump(run("r3", parameters={"x": 1})))
        planned = await orchest("plan", "--cluster", str(edited), "-n", NS, "--output", "json")
        rows = {r["step"]: (r["action"], r["reason"]) for r in json.loads(planned.out)["steps"]}
        assert rows == {"make": ("run", "parameter x added"), "use": ("run", "use.py changed")}
    finally:
        stand_in.cancel()
    assert not [
        p for p in cluster.peek_all("v1/pods", NS) if p["metadata"]["name"].startswith("orchest-plan-")
    ]
    missing = await orchest("plan", "--cluster", str(tmp_path / "nope.yaml"))
    assert missing.code == 2 and missing.err.strip().endswith("no such file")
