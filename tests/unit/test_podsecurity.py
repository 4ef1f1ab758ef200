"""The Pod Security "restricted" checker: a conforming pod passes, each kind of breach is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchest_operator.podsecurity import pod_template, pod_violations, restricted_violations

GOOD: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "main",
            "image": "x:1",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "ports": [{"containerPort": 8080}],
        }
    ],
    "volumes": [
        {"name": "tmp", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
    ],
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field set; ``containers.0.x`` style paths."""
    spec = copy.deepcopy(GOOD)
    node: Any = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[keys[-1]] = value
    return spec


def test_a_conforming_pod_passes() -> None:
    assert pod_violations(GOOD) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("hostNetwork", True, "pod: hostNetwork must not be true"),
        ("hostPID", True, "pod: hostPID must not be true"),
        ("hostIPC", True, "pod: hostIPC must not be true"),
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "volume 'h': type hostPath is not allowed"),
        (
            "volumes",
            [{"name": "n", "nfs": {"server": "s", "path": "/"}}],
            "volume 'n': type nfs is not allowed",
        ),
        ("securityContext.runAsNonRoot", False, "pod: runAsNonRoot must not be false"),
        ("securityContext.runAsUser", 0, "pod: runAsUser must not be 0"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "pod: seccompProfile.type Unconfined"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "sysctl kernel.msgmax"),
        ("securityContext.seLinuxOptions", {"type": "spc_t"}, "pod: seLinuxOptions.type spc_t"),
        ("securityContext.seLinuxOptions", {"user": "root"}, "pod: seLinuxOptions.user must not be set"),
        ("securityContext.windowsOptions", {"hostProcess": True}, "windowsOptions.hostProcess"),
        ("containers.0.securityContext.privileged", True, "container 'main': privileged must not be true"),
        (
            "containers.0.securityContext.allowPrivilegeEscalation",
            True,
            "container 'main': allowPrivilegeEscalation must be false",
        ),
        (
            "containers.0.securityContext.capabilities",
            {},
            "container 'main': capabilities.drop must include ALL",
        ),
        (
            "containers.0.securityContext.capabilities.add",
            ["SYS_ADMIN"],
            "capabilities.add may only hold NET_BIND_SERVICE, not SYS_ADMIN",
        ),
        ("containers.0.securityContext.runAsNonRoot", False, "container 'main': runAsNonRoot must be true"),
        ("containers.0.securityContext.runAsUser", 0, "container 'main': runAsUser must not be 0"),
        (
            "containers.0.securityContext.seccompProfile",
            {"type": "Unconfined"},
            "container 'main': seccompProfile.type must be RuntimeDefault or Localhost",
        ),
        ("containers.0.securityContext.procMount", "Unmasked", "container 'main': procMount must be Default"),
        (
            "containers.0.securityContext.appArmorProfile",
            {"type": "Unconfined"},
            "appArmorProfile.type Unconfined",
        ),
        ("containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort 80 is not allowed"),
    ],
)
def test_each_breach_is_named(path: str, value: Any, message: str) -> None:
    problems = pod_violations(changed(path, value))
    assert any(message in p for p in problems), problems


def test_container_settings_can_stand_in_for_the_pod() -> None:
    spec = changed("securityContext", {})
    problems = pod_violations(spec)
    assert "container 'main': runAsNonRoot must be true (on the pod or the container)" in problems
    assert "container 'main': seccompProfile.type must be RuntimeDefault or Localhost" in problems
    spec["containers"][0]["securityContext"] |= {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "Localhost"},
    }
    assert pod_violations(spec) == []


def test_init_and_ephemeral_containers_are_checked_too() -> None:
    spec = copy.deepcopy(GOOD)
    spec["initContainers"] = [{"name": "init", "image": "x:1"}]
    assert "initContainer 'init': allowPrivilegeEscalation must be false" in pod_violations(spec)


def test_apparmor_annotations() -> None:
    key = "container.apparmor.security.beta.kubernetes.io/main"
    assert pod_violations(GOOD, {key: "runtime/default"}) == []
    assert pod_violations(GOOD, {key: "unconfined"}) == [
        f"pod: AppArmor annotation {key} must be runtime/default or localhost/*"
    ]


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Pod", "metadata": {"annotations": {"a": "b"}}, "spec": GOOD},
        {"kind": "Deployment", "spec": {"template": {"metadata": {}, "spec": GOOD}}},
        {"kind": "Job", "spec": {"template": {"spec": GOOD}}},
        {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": GOOD}}}}},
    ],
)
def test_pod_template_is_found_in_every_workload(obj: dict[str, Any]) -> None:
    _, spec = pod_template(obj)
    assert spec == GOOD
    assert restricted_violations(obj) == []


def test_an_object_without_a_pod_template_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"ConfigMap has no pod template at spec\.template"):
        pod_template({"kind": "ConfigMap", "data": {}})
