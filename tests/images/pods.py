"""Run a container of a pod spec with Docker as the kubelet would run it.

The pod spec comes from orchest's own builders or manifests, so what runs here is what a cluster runs:
user and group, supplementary ``fsGroup``, read-only root, dropped capabilities, no new privileges,
emptyDirs as tmpfs, persistent volumes as directories of this machine, env (``secretKeyRef`` resolved
from the given Secrets), working directory, command and args, the termination-message file. A security
or volume setting this module does not know fails the test instead of being ignored, so the translation
stays exact as the builders change; resources, probes and ports are not emulated.
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchest_operator import settings

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = os.environ.get("REGISTRY") or settings.REGISTRY
TAG = os.environ.get("TAG") or settings.release()
TERMINATION_LOG = "/dev/termination-log"


@functools.cache
def docker_client() -> str:
    return (
        os.environ.get("DOCKER")
        or subprocess.run(
            [str(ROOT / "images" / "docker-client.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def image(name: str) -> str:
    """The tag `make images` gives the image of ``name`` (operator, step-runner, jupyter-server)."""
    return f"{REGISTRY}/orchest-{name}:{TAG}"


def docker(
    *args: str, timeout: float = 120, check: bool = True, merge: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the docker client; ``merge`` puts stderr into stdout, in the order the container wrote them."""
    err = subprocess.STDOUT if merge else subprocess.PIPE
    done = subprocess.run(
        [docker_client(), *args], stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        output = done.stderr or done.stdout
        raise AssertionError(f"docker {' '.join(args[:3])} ... failed: {output[-3000:]}")
    return done


@dataclass
class PodRun:
    """How this machine stands in for the cluster around the pod."""

    claims: Mapping[str, Path] = field(default_factory=dict)  # claimName -> directory of this machine
    secrets: Sequence[Mapping[str, Any]] = ()  # Secret objects for secretKeyRef
    network: str = "none"
    termination_log: Path | None = None  # this machine's file behind terminationMessagePath
    env: Mapping[str, str] = field(default_factory=dict)  # set or replaced after the pod's own
    args: Sequence[str] | None = None  # replaces the container's args (e.g. to move a port)
    options: Sequence[str] = ()  # more docker options: what stands in for the cluster (e.g. a kubeconfig)


_POD_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
_CONTAINER_SECURITY = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"}


def run_args(pod: Mapping[str, Any], container: Mapping[str, Any], how: PodRun) -> list[str]:
    """``docker run`` options, image and arguments for ``container`` of the pod spec ``pod``."""
    options = [f"--network={how.network}", *how.options]
    options += _security(pod.get("securityContext", {}), container.get("securityContext", {}))
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        options += _mount(volumes[mount["name"]], mount, how)
    for name, value in {**_env(container.get("env", []), how.secrets), **how.env}.items():
        options += ["--env", f"{name}={value}"]
    if "workingDir" in container:
        options += ["--workdir", container["workingDir"]]
    if how.termination_log is not None:
        target = container.get("terminationMessagePath", TERMINATION_LOG)
        options += ["--volume", f"{how.termination_log}:{target}"]
    command = list(container.get("command", []))
    args = list(how.args if how.args is not None else container.get("args", []))
    if command:
        options += ["--entrypoint", command[0]]
        return [*options, container["image"], *command[1:], *args]
    return [*options, container["image"], *args]


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    unknown = (set(pod) - _POD_SECURITY) | (set(container) - _CONTAINER_SECURITY)
    assert not unknown, f"securityContext fields this translation does not know: {sorted(unknown)}"
    uid, gid = pod.get("runAsUser"), pod.get("runAsGroup")
    assert uid is not None, "the pod sets no runAsUser; the image's USER would apply"
    assert not pod.get("runAsNonRoot") or uid != 0
    options = ["--user", f"{uid}:{gid if gid is not None else uid}"]
    if "fsGroup" in pod:
        options += ["--group-add", str(pod["fsGroup"])]
    # Docker's default seccomp profile is the runtime default a kubelet applies for RuntimeDefault.
    assert pod.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    if container.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    if container.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    capabilities = container.get("capabilities", {})
    assert set(capabilities) <= {"drop", "add"} and not capabilities.get("add")
    options += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
    return options


def _mount(volume: Mapping[str, Any], mount: Mapping[str, Any], how: PodRun) -> list[str]:
    unknown = set(mount) - {"name", "mountPath", "subPath", "readOnly"}
    assert not unknown, f"volumeMount fields this translation does not know: {sorted(unknown)}"
    target = mount["mountPath"]
    if "emptyDir" in volume:
        # An emptyDir is writable by everyone in the pod and not noexec, unlike Docker's default tmpfs.
        size = volume["emptyDir"].get("sizeLimit")
        options = "rw,exec,nosuid,nodev,mode=1777" + (f",size={_bytes(size)}" if size else "")
        return ["--tmpfs", f"{target}:{options}"]
    if "persistentVolumeClaim" in volume:
        source = how.claims[volume["persistentVolumeClaim"]["claimName"]] / mount.get("subPath", "")
        read_only = ",readonly" if mount.get("readOnly") else ""
        return ["--mount", f"type=bind,source={source},target={target}{read_only}"]
    raise AssertionError(f"volume kind this translation does not know: {sorted(volume)}")


def _env(env: Sequence[Mapping[str, Any]], secrets: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for entry in env:
        if "value" in entry:
            resolved[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        secret = next(s for s in secrets if s["metadata"]["name"] == ref["name"])
        data = secret.get("data", {})
        if ref["key"] in data:
            resolved[entry["name"]] = base64.b64decode(data[ref["key"]]).decode()
        else:
            assert ref.get("optional"), f"Secret {ref['name']} has no key {ref['key']}"
    return resolved


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    return int(quantity)


def hand_over(*paths: Path, uid: int = 1000) -> None:
    """Give files of this machine to the pod's user, as a volume with ``fsGroup`` would: owned by ``uid``
    when the tests run as root, else writable by everyone."""
    for path in paths:
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            if os.geteuid() == 0:
                os.chown(item, uid, uid)
            else:
                item.chmod(item.stat().st_mode | 0o777 if item.is_dir() else 0o666)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
