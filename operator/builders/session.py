"""The objects of an interactive session: Jupyter Enterprise Gateway (EG) plus a jupyter-server using it.

EG starts kernels as pods (or Docker containers) and a per-Pipeline jupyter-server talks to EG through its
gateway client. All objects live in the Pipeline's namespace, carry the Pipeline as controller owner
(the garbage collector removes them with it) and have names derived from the Pipeline's.

Facts about EG 3.x these builders rely on (checked in EG's source):

* EG's image keeps the container launchers inside its sample kernelspec directories
  (``/usr/local/share/jupyter/kernels/python_kubernetes/scripts/launch_kubernetes.py`` and the docker
  twin); the launcher renders the ``kernel-pod.yaml.j2`` next to it. Mounting a volume over
  ``/usr/local/share/jupyter/kernels`` would hide them, so each kernelspec is mounted as a single file
  (``<kernel>/kernel.json`` through ``subPath``) beside them, and EG is told which kernelspecs to offer.
* The kernel-pod template reads ``KERNEL_VOLUMES`` / ``KERNEL_VOLUME_MOUNTS`` as YAML lists of mappings
  (JSON is YAML) and copies every ``KERNEL_*`` variable the client sends; jupyter-server's gateway client
  sends every ``KERNEL_*`` variable of its own environment, so those are set on jupyter-server.
* ``KERNEL_UID``/``KERNEL_GID`` make the kernel pod run as that user (the template sets
  ``runAsUser``/``runAsGroup``); the Docker launcher passes them to the container too.
* With ``KERNEL_NAMESPACE`` given and ``EG_SHARED_NAMESPACE`` on, EG's Kubernetes proxy lists, creates
  and deletes kernel pods in that namespace and nothing else (no namespaces, no role bindings).
* Pod Security: EG's and jupyter-server's pods pass "restricted". Kernel pods do not and cannot from
  here: EG renders them from the ``kernel-pod.yaml.j2`` inside its image, which sets no container
  ``securityContext`` (privilege escalation, capabilities, seccomp); ``KERNEL_UID``/``KERNEL_GID`` only
  make them run as uid/gid 1000. A namespace with Kubernetes-proxy sessions can enforce "baseline".
* ``EG_AUTH_TOKEN`` makes EG require ``Authorization: token <t>``, which jupyter-server sends from
  ``JUPYTER_GATEWAY_AUTH_TOKEN``; jupyter-server also sends its ``KERNEL_LAUNCH_TIMEOUT`` with every
  start request, which overrides ``EG_KERNEL_LAUNCH_TIMEOUT``, so both get the same value.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchest_operator import naming
from orchest_operator.builders.common import (
    managed_labels,
    owner_reference,
    restricted_container_security,
    restricted_pod_security,
)
from orchest_operator.kernelspecs import RenderedKernel
from orchest_operator.models import ProcessProxy, Volume

COMPONENT_EG = "enterprise-gateway"
COMPONENT_SERVER = "jupyter-server"
ANNOTATION_KERNELSPECS = "orchest.io/kernelspecs-digest"
ANNOTATION_TOKENS = "orchest.io/token-digest"

EG_PORT = 8888
SERVER_PORT = 8888
KERNELSPEC_DIR = "/usr/local/share/jupyter/kernels"
DOCKER_TLS_DIR = "/etc/orchest/docker-tls"
DOCKER_TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
DOCKER_HOST_KEY = "DOCKER_HOST"
DOCKER_NETWORK_KEY = "EG_DOCKER_NETWORK"

TOKEN_KEY = "token"  # what a user types into Jupyter
GATEWAY_TOKEN_KEY = "gateway-token"  # what jupyter-server shows EG; users never need it

PROJECT_VOLUME = "project"
SCRATCH_VOLUME = "scratch"
SCRATCH_DIR = "/tmp"  # HOME and Jupyter's runtime files in images/jupyter-server
KERNELSPEC_VOLUME = "kernelspecs"
DOCKER_TLS_VOLUME = "docker-tls"
KERNEL_USERNAME_LIMIT = 26  # EG names kernel pods '<KERNEL_USERNAME>-<36-char kernel id>' (<= 63)


@dataclass(frozen=True)
class SessionNames:
    """The names of every session object of one Pipeline; deterministic, so a restart finds them."""

    eg: str  # ServiceAccount, Role, RoleBinding, Deployment and Service of EG
    kernelspecs: str  # ConfigMap
    server: str  # Deployment and Service of jupyter-server
    token: str  # Secret

    @classmethod
    def of(cls, pipeline: str) -> SessionNames:
        return cls(
            eg=naming.derived(pipeline, "eg", dns1035=True),
            kernelspecs=naming.derived(pipeline, "kernelspecs", dns1035=True),
            server=naming.derived(pipeline, "jupyter", dns1035=True),
            token=naming.derived(pipeline, "session-token", dns1035=True),
        )


@dataclass(frozen=True)
class SessionOptions:
    """Cluster-wide knobs, from the operator's settings."""

    eg_image: str
    server_image: str
    kernel_launch_timeout_seconds: int = 120
    cull_idle_seconds: int = 3600
    cull_interval_seconds: int = 60
    run_as_user: int = 1000


@dataclass(frozen=True)
class DockerHost:
    """The user's Secret naming the Docker (Swarm) daemon EG starts kernels on."""

    secret: str
    tls: bool = False


@dataclass(frozen=True)
class Session:
    """Everything the session objects of one Pipeline are built from."""

    pipeline: Mapping[str, Any]  # the Pipeline object (apiVersion, kind, metadata.name/namespace/uid)
    volume: Volume
    kernels: Sequence[RenderedKernel]
    proxy: ProcessProxy
    options: SessionOptions
    docker: DockerHost | None = None

    @property
    def name(self) -> str:
        return self.pipeline["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.pipeline["metadata"]["namespace"]

    @property
    def names(self) -> SessionNames:
        return SessionNames.of(self.name)


def labels(pipeline: str, component: str) -> dict[str, str]:
    return managed_labels(
        **{naming.LABEL_PIPELINE: naming.label_value(pipeline), naming.LABEL_COMPONENT: component}
    )


def _meta(session: Session, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": session.namespace,
        "labels": labels(session.name, component),
        "ownerReferences": [owner_reference(dict(session.pipeline))],
    }


def digest(parts: Mapping[str, Any]) -> str:
    """A short, stable fingerprint: pod templates carry it so a content change rolls the pods."""
    return hashlib.sha256(json.dumps(dict(parts), sort_keys=True).encode()).hexdigest()[:16]


def _eg_container_security() -> dict[str, Any]:
    """Pod Security "restricted" for EG's container. Its root filesystem stays writable: the upstream
    image writes runtime files under $HOME, and "restricted" does not require a read-only one."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _tcp_probe(port: int, period: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": port}, "periodSeconds": period, "failureThreshold": 3}


# --- Enterprise Gateway -----------------------------------------------------------------------------


def eg_args(
    kernels: Sequence[str], options: SessionOptions, *, ip: str = "0.0.0.0", port: int = EG_PORT
) -> list[str]:
    """EG's command line: only the kernelspecs of this session are offered, the first is the default.

    The image's own start script turns env variables into these flags too, but only for some of them and
    differently between releases; flags given here are what the round-trip test runs as well.
    """
    return [
        "jupyter",
        "enterprisegateway",
        f"--ip={ip}",
        f"--port={port}",
        "--port_retries=0",
        f"--KernelSpecManager.whitelist={json.dumps(list(kernels))}",
        f"--RemoteMappingKernelManager.default_kernel_name={kernels[0]}",
        f"--RemoteMappingKernelManager.cull_idle_timeout={options.cull_idle_seconds}",
        f"--RemoteMappingKernelManager.cull_interval={options.cull_interval_seconds}",
    ]


def eg_env(
    *, namespace: str, token_secret: str, options: SessionOptions, docker: DockerHost | None = None
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "EG_NAMESPACE", "value": namespace},
        {"name": "EG_SHARED_NAMESPACE", "value": "True"},
        {"name": "EG_KERNEL_LAUNCH_TIMEOUT", "value": str(options.kernel_launch_timeout_seconds)},
        # jupyter-server lists running kernels through EG (JupyterLab polls /api/kernels)
        {"name": "EG_LIST_KERNELS", "value": "True"},
        _secret_env("EG_AUTH_TOKEN", token_secret, GATEWAY_TOKEN_KEY),
    ]
    if docker is not None:
        env.append(_secret_env("DOCKER_HOST", docker.secret, DOCKER_HOST_KEY))
        env.append(_secret_env("EG_DOCKER_NETWORK", docker.secret, DOCKER_NETWORK_KEY, optional=True))
        if docker.tls:
            env.append({"name": "DOCKER_TLS_VERIFY", "value": "1"})
            env.append({"name": "DOCKER_CERT_PATH", "value": DOCKER_TLS_DIR})
    return env


def service_account(session: Session) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(session, session.names.eg, COMPONENT_EG),
        # Only the Kubernetes proxy talks to the API server; Docker proxies get no token at all.
        "automountServiceAccountToken": session.proxy is ProcessProxy.KUBERNETES,
    }


EG_RULES: list[dict[str, Any]] = [
    # k8s.py lists kernel pods by label and deletes them; the launcher creates them (and lists on 409)
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list"]},
]


def role(session: Session) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(session, session.names.eg, COMPONENT_EG),
        "rules": EG_RULES,
    }


def role_binding(session: Session) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(session, session.names.eg, COMPONENT_EG),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": session.names.eg},
        "subjects": [{"kind": "ServiceAccount", "name": session.names.eg, "namespace": session.namespace}],
    }


def kernelspec_data(session: Session) -> dict[str, str]:
    return {kernel.name: kernel.text() for kernel in session.kernels}


def kernelspec_config_map(session: Session) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(session, session.names.kernelspecs, COMPONENT_EG),
        "data": kernelspec_data(session),
    }


def eg_deployment(session: Session, token_digest: str) -> dict[str, Any]:
    names, options = session.names, session.options
    kernel_names = [k.name for k in session.kernels]
    volumes: list[dict[str, Any]] = [
        {
            "name": KERNELSPEC_VOLUME,
            "configMap": {
                "name": names.kernelspecs,
                "items": [{"key": k, "path": f"{k}/kernel.json"} for k in kernel_names],
            },
        }
    ]
    mounts: list[dict[str, Any]] = [
        {
            "name": KERNELSPEC_VOLUME,
            "mountPath": f"{KERNELSPEC_DIR}/{k}/kernel.json",
            "subPath": f"{k}/kernel.json",
            "readOnly": True,
        }
        for k in kernel_names
    ]
    if session.docker is not None and session.docker.tls:
        volumes.append(
            {
                "name": DOCKER_TLS_VOLUME,
                "secret": {
                    "secretName": session.docker.secret,
                    "items": [{"key": f, "path": f} for f in DOCKER_TLS_FILES],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": DOCKER_TLS_VOLUME, "mountPath": DOCKER_TLS_DIR, "readOnly": True})
    pod_labels = labels(session.name, COMPONENT_EG)
    container = {
        "name": "enterprise-gateway",
        "image": options.eg_image,
        # args, not command: the image's entrypoint (tini, which reaps the launcher processes) stays
        "args": eg_args(kernel_names, options),
        "env": eg_env(
            namespace=session.namespace, token_secret=names.token, options=options, docker=session.docker
        ),
        "ports": [{"name": "http", "containerPort": EG_PORT}],
        "readinessProbe": _tcp_probe(EG_PORT, 5),
        "livenessProbe": {**_tcp_probe(EG_PORT, 20), "initialDelaySeconds": 30},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "volumeMounts": mounts,
        "securityContext": _eg_container_security(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(session, names.eg, COMPONENT_EG),
        "spec": {
            "replicas": 1,
            # EG keeps its kernels in memory: two EGs side by side would split them, so never overlap.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        ANNOTATION_KERNELSPECS: digest(kernelspec_data(session)),
                        ANNOTATION_TOKENS: token_digest,
                    },
                },
                "spec": {
                    "serviceAccountName": names.eg,
                    "automountServiceAccountToken": session.proxy is ProcessProxy.KUBERNETES,
                    # EG shuts its kernels down on SIGTERM; give it time to delete their pods.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": restricted_pod_security(options.run_as_user),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(session: Session, name: str, component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(session, name, component),
        "spec": {
            "selector": labels(session.name, component),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def eg_service(session: Session) -> dict[str, Any]:
    return service(session, session.names.eg, COMPONENT_EG, EG_PORT)


def eg_url(names: SessionNames, namespace: str) -> str:
    return f"http://{names.eg}.{namespace}.svc:{EG_PORT}"


# --- jupyter-server ---------------------------------------------------------------------------------


def token_secret(session: Session, token: str, gateway_token: str) -> dict[str, Any]:
    """The tokens, generated by the caller. Create it only if absent: rotating it restarts the server."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(session, session.names.token, COMPONENT_SERVER),
        "type": "Opaque",
        "data": {
            TOKEN_KEY: base64.b64encode(token.encode()).decode(),
            GATEWAY_TOKEN_KEY: base64.b64encode(gateway_token.encode()).decode(),
        },
    }


def kernel_username(pipeline: str) -> str:
    return naming.derived(pipeline, limit=KERNEL_USERNAME_LIMIT)


def kernel_volumes(volume: Volume) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pipeline volume as EG's kernel-pod template expects it: (volumes, volumeMounts)."""
    mount: dict[str, Any] = {"name": PROJECT_VOLUME, "mountPath": volume.mount_path}
    if volume.sub_path:
        mount["subPath"] = volume.sub_path
    return [{"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": volume.claim_name}}], [mount]


def server_args(root_dir: str, *, ip: str = "0.0.0.0", port: int = SERVER_PORT) -> list[str]:
    return [
        "jupyter",
        "server",
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.open_browser=False",
        "--ServerApp.allow_remote_access=True",
    ]


def gateway_env(
    *,
    gateway_url: str,
    token_secret: str,
    namespace: str,
    pipeline: str,
    volume: Volume,
    options: SessionOptions,
) -> list[dict[str, Any]]:
    """jupyter-server's environment: its login token, how it reaches EG, and what every kernel gets.

    Tokens come from ``token_secret`` through ``secretKeyRef``; no token is ever a literal here.
    """
    volumes, mounts = kernel_volumes(volume)
    uid = str(options.run_as_user)
    return [
        _secret_env("JUPYTER_TOKEN", token_secret, TOKEN_KEY),
        {"name": "JUPYTER_GATEWAY_URL", "value": gateway_url},
        _secret_env("JUPYTER_GATEWAY_AUTH_TOKEN", token_secret, GATEWAY_TOKEN_KEY),
        {"name": "KERNEL_LAUNCH_TIMEOUT", "value": str(options.kernel_launch_timeout_seconds)},
        {"name": "KERNEL_NAMESPACE", "value": namespace},
        {"name": "KERNEL_USERNAME", "value": kernel_username(pipeline)},
        {"name": "KERNEL_UID", "value": uid},
        {"name": "KERNEL_GID", "value": uid},
        {"name": "KERNEL_VOLUMES", "value": json.dumps(volumes)},
        {"name": "KERNEL_VOLUME_MOUNTS", "value": json.dumps(mounts)},
    ]


def server_deployment(session: Session, token_digest: str) -> dict[str, Any]:
    names, volume = session.names, session.volume
    _, kernel_mounts = kernel_volumes(volume)
    pod_labels = labels(session.name, COMPONENT_SERVER)
    container = {
        "name": "jupyter-server",
        "image": session.options.server_image,
        "command": server_args(volume.mount_path),  # the image's entrypoint is `jupyter server` itself
        "env": gateway_env(
            gateway_url=eg_url(names, session.namespace),
            token_secret=names.token,
            namespace=session.namespace,
            pipeline=session.name,
            volume=volume,
            options=session.options,
        ),
        "ports": [{"name": "http", "containerPort": SERVER_PORT}],
        "readinessProbe": _tcp_probe(SERVER_PORT, 5),
        "livenessProbe": {**_tcp_probe(SERVER_PORT, 20), "initialDelaySeconds": 30},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        # the same mount the kernels get (same files at the same paths), and a writable /tmp
        "volumeMounts": [*kernel_mounts, {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_DIR}],
        "workingDir": volume.mount_path,
        "securityContext": restricted_container_security(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(session, names.server, COMPONENT_SERVER),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one writer of notebook files at a time
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {ANNOTATION_TOKENS: token_digest}},
                "spec": {
                    "automountServiceAccountToken": False,  # it only talks to EG, never to the API
                    "securityContext": restricted_pod_security(session.options.run_as_user),
                    "containers": [container],
                    "volumes": [
                        {"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": volume.claim_name}},
                        {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }


def server_service(session: Session) -> dict[str, Any]:
    return service(session, session.names.server, COMPONENT_SERVER, SERVER_PORT)


def server_url(names: SessionNames, namespace: str) -> str:
    return f"http://{names.server}.{namespace}.svc:{SERVER_PORT}"


def objects(session: Session, token_digest: str) -> list[dict[str, Any]]:
    """Every session object but the token Secret (created once, separately), in creation order."""
    rbac = [role(session), role_binding(session)] if session.proxy is ProcessProxy.KUBERNETES else []
    return [
        service_account(session),
        *rbac,
        kernelspec_config_map(session),
        eg_deployment(session, token_digest),
        eg_service(session),
        server_deployment(session, token_digest),
        server_service(session),
    ]
