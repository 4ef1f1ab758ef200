"""Pod Security Standards "restricted", checked on a manifest before it reaches the API server.

A namespace that enforces "restricted" rejects a non-conforming pod only when the Job or Deployment
controller tries to create it, long after the operator's create succeeded; the run would then hang with
an event nobody reads. So every pod template the operator builds, and the operator's own Deployment, is
checked by these tests. The rules follow the Pod Security Standards (baseline + restricted, latest).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_TEMPLATE_PATHS = {
    "Pod": (),
    "PodTemplate": ("template",),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def pod_template(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(metadata, spec) of the pod that ``obj`` runs: a Pod, or any workload with ``spec.template``."""
    path = _TEMPLATE_PATHS.get(obj.get("kind", ""), ("spec", "template"))
    node: Mapping[str, Any] = obj
    for key in path:
        if key not in node:
            raise ValueError(f"{obj.get('kind', 'object')} has no pod template at {'.'.join(path)}")
        node = node[key]
    return node.get("metadata", {}), node.get("spec", {})


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in _CONTAINER_LISTS:
        for c in spec.get(key) or []:
            yield f"{key[:-1]} {c.get('name', '?')!r}", c


def restricted_violations(obj: Mapping[str, Any]) -> list[str]:
    """Every way ``obj``'s pod breaks the "restricted" profile; empty when it conforms."""
    metadata, spec = pod_template(obj)
    return pod_violations(spec, metadata.get("annotations") or {})


def pod_violations(spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> list[str]:
    """Violations of the "restricted" profile by a pod spec (and the pod's annotations, for AppArmor)."""
    problems: list[str] = []
    pod_sc: Mapping[str, Any] = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            problems.append(f"pod: {host} must not be true")
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        bad = [k for k in kinds if k not in RESTRICTED_VOLUME_TYPES]
        if bad:
            problems.append(f"volume {volume.get('name', '?')!r}: type {bad[0]} is not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl.get('name')} is not allowed")
    problems += _context_problems("pod", pod_sc)
    for key, value in (annotations or {}).items():
        if key.startswith(_APPARMOR_ANNOTATION) and not _apparmor_ok(value):
            problems.append(f"pod: AppArmor annotation {key} must be runtime/default or localhost/*")

    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_TYPES:
        problems.append(f"pod: seccompProfile.type {pod_seccomp} is not allowed")
    if pod_sc.get("runAsNonRoot") is False:
        problems.append("pod: runAsNonRoot must not be false")
    for where, container in _containers(spec):
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        problems += _context_problems(where, sc)
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must not be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        caps: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop must include ALL")
        added = [c for c in caps.get("add") or [] if c != "NET_BIND_SERVICE"]
        if added:
            problems.append(f"{where}: capabilities.add may only hold NET_BIND_SERVICE, not {added[0]}")
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            problems.append(f"{where}: runAsNonRoot must be true (on the pod or the container)")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in SECCOMP_TYPES:
            problems.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{where}: procMount must be Default")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']} is not allowed")
    return problems


def _apparmor_ok(value: str) -> bool:
    return value == "runtime/default" or value.startswith("localhost/")


def _context_problems(where: str, sc: Mapping[str, Any]) -> list[str]:
    """Checks that apply alike to the pod's and each container's securityContext."""
    problems = []
    if sc.get("runAsUser") == 0:
        problems.append(f"{where}: runAsUser must not be 0")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{where}: windowsOptions.hostProcess must not be true")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        problems.append(f"{where}: appArmorProfile.type {apparmor} is not allowed")
    selinux: Mapping[str, Any] = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        problems.append(f"{where}: seLinuxOptions.type {selinux['type']} is not allowed")
    for key in ("user", "role"):
        if selinux.get(key):
            problems.append(f"{where}: seLinuxOptions.{key} must not be set")
    return problems
