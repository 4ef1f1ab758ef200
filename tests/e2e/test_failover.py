"""Two operator replicas on a real cluster: SIGKILL the leader's process mid-run; the standby takes the
Lease within 20 s (standard timings: 15 s lease, 2 s retry) and the run ends with one Job per step.

The kill is a real ``kill -9`` of the container's process, sent from the kind node (a container's own
PID 1 ignores SIGKILL from inside it); without docker and crictl on that node the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import pytest

from orchest_operator.naming import job_name
from tests.e2e.conftest import Orchest, wait

NAMESPACE = os.environ.get("ORCHEST_E2E_OPERATOR_NAMESPACE", "orchest-system")
LEASE = os.environ.get("ORCHEST_E2E_LEASE", "orchest-operator")
STEP = "import time; time.sleep(8)\n"


def holder(kube: Any) -> str:
    lease = kube.CoordinationV1Api().read_namespaced_lease(LEASE, NAMESPACE)
    return lease.spec.holder_identity or ""


def kill_9(kube: Any, pod_name: str) -> None:
    """``kill -9`` the operator container's process, from the node the pod runs on (a kind node)."""
    node = kube.CoreV1Api().read_namespaced_pod(pod_name, NAMESPACE).spec.node_name
    script = (
        f"id=$(crictl ps -q --name operator --label io.kubernetes.pod.name={pod_name}) && "
        "pid=$(crictl inspect --output go-template --template '{{.info.pid}}' $id) && kill -9 $pid"
    )
    subprocess.run(["docker", "exec", node, "sh", "-c", script], check=True, timeout=60)


def test_standby_takes_over_from_a_killed_leader(kube: Any, orchest: Orchest, project: Any) -> None:
    if shutil.which("docker") is None:
        pytest.skip("needs docker to reach the kind node")
    core = kube.CoreV1Api()

    def ready_pods() -> set[str]:
        pods = core.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/component=operator"
        ).items
        return {
            p.metadata.name
            for p in pods
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }

    # two replicas up (the chart's default), one of them named in the Lease (an earlier test may have
    # replaced the pods: wait for the new ones to settle)
    wait(lambda: len(ready_pods()) >= 2, 180)
    leader = wait(lambda: (h := holder(kube)) and h.rsplit("_", 1)[0] in ready_pods() and h, 120)
    leader_pod = leader.rsplit("_", 1)[0]

    claim = project({"step.py": STEP})
    chain = [{"name": f"s{i}", "file": "step.py", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(3)]
    orchest.pipeline("failover", claim, chain)
    orchest.run("r", "failover")
    wait(lambda: orchest.jobs("r"), 120)

    kill_9(kube, leader_pod)
    killed = time.monotonic()
    new = wait(lambda: (h := holder(kube)) not in ("", leader) and h, 60, interval=0.25)
    took_over = time.monotonic() - killed
    assert took_over <= 20, f"the standby took {took_over:.1f} s"
    assert new.rsplit("_", 1)[0] != leader_pod

    run = orchest.finished("r")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert sorted(j.metadata.name for j in orchest.jobs("r")) == sorted(
        job_name("r", f"s{i}") for i in range(3)
    )
    assert all(s["attempts"] == 1 for s in run["status"]["steps"].values())
    # the killed replica came back (the kubelet restarted it) and stands by
    wait(
        lambda: (
            (core.read_namespaced_pod(leader_pod, NAMESPACE).status.container_statuses[0].restart_count or 0)
            >= 1
        ),
        60,
    )
