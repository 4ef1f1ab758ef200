"""The session objects: valid Kubernetes, Pod Security "restricted", least privilege, tokens kept secret."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchest_operator import naming, podsecurity, rbac, session
from orchest_operator.builders import session as build
from orchest_operator.builders.session import DockerHost, SessionNames
from orchest_operator.settings import Settings

K8S_VERSION = "1.31"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
TOKEN, GATEWAY_TOKEN = "user-token-0123456789", "gateway-token-9876543210"


def pipeline(name: str = "demo", **spec: Any) -> dict[str, Any]:
    body = {
        "volume": {"claimName": "data", "mountPath": "/work"},
        "image": "elyra/kernel-py:3.2.3",
        "session": {"enabled": True},
        "steps": [{"name": "a", "file": "a.py"}],
    }
    body.update(spec)
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": "team-a", "uid": "0f6c-uid"},
        "spec": body,
    }


def built(obj: dict[str, Any], docker: DockerHost | None = None) -> build.Session:
    plan = session.plan(obj["spec"], Settings())
    assert plan.problems == []
    return session.session_of(obj, plan, Settings(), docker)


def everything(s: build.Session) -> list[dict[str, Any]]:
    return [build.token_secret(s, TOKEN, GATEWAY_TOKEN), *build.objects(s, "digest")]


def by_kind(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


SWARM = {"enabled": True, "processProxy": "DockerSwarm", "dockerHostSecret": "swarm"}
CASES = {
    "kubernetes": (pipeline(), None),
    "kubernetes-two-kernels": (
        pipeline(session={"enabled": True, "kernels": [{"name": "py"}, {"name": "r", "language": "R"}]}),
        None,
    ),
    "swarm": (pipeline(session=SWARM), DockerHost("swarm")),
    "swarm-tls": (pipeline(session=SWARM), DockerHost("swarm", tls=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_every_object_is_valid_kubernetes_and_owned(case: str) -> None:
    obj, docker = CASES[case]
    for manifest in everything(built(obj, docker)):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        meta = manifest["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "orchest.io/v1alpha1",
                "kind": "Pipeline",
                "name": "demo",
                "uid": "0f6c-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"][naming.LABEL_PIPELINE] == "demo"
        assert meta["labels"][naming.LABEL_MANAGED_BY] == naming.MANAGED_BY
        assert meta["labels"][naming.LABEL_COMPONENT] in (build.COMPONENT_EG, build.COMPONENT_SERVER)


@pytest.mark.parametrize("case", CASES)
def test_pods_pass_pod_security_restricted_and_never_mount_the_docker_socket(case: str) -> None:
    obj, docker = CASES[case]
    for deployment in (o for o in everything(built(obj, docker)) if o["kind"] == "Deployment"):
        assert podsecurity.restricted_violations(deployment) == []
        assert "hostPath" not in json.dumps(deployment)
        assert "docker.sock" not in json.dumps(deployment)


def test_names_are_dns1035_and_hashed_when_long() -> None:
    short = SessionNames.of("demo")
    assert (short.eg, short.kernelspecs, short.server, short.token) == (
        "demo-eg",
        "demo-kernelspecs",
        "demo-jupyter",
        "demo-session-token",
    )
    long_a, long_b = SessionNames.of("p" * 100 + "a"), SessionNames.of("p" * 100 + "b")
    digit = SessionNames.of("1st-pipeline")
    for names in (long_a, long_b, digit):
        for name in (names.eg, names.kernelspecs, names.server, names.token):
            assert len(name) <= 63 and DNS1035.match(name), name
    assert long_a.eg != long_b.eg  # the hash keeps cut names apart
    s = built(pipeline(name="p" * 100 + "a"))
    for manifest in everything(s):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert len(build.kernel_username(s.name)) <= build.KERNEL_USERNAME_LIMIT


def test_tokens_only_in_the_secret_and_referenced_by_secret_key() -> None:
    s = built(pipeline())
    objs = everything(s)
    secret = by_kind(objs, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {build.TOKEN_KEY: TOKEN, build.GATEWAY_TOKEN_KEY: GATEWAY_TOKEN}
    for manifest in objs:
        if manifest is not secret:
            text = json.dumps(manifest)
            assert TOKEN not in text and GATEWAY_TOKEN not in text, manifest["kind"]
    server = env_of(by_kind(objs, "Deployment", s.names.server))
    eg = env_of(by_kind(objs, "Deployment", s.names.eg))
    for env, key in (
        (server["JUPYTER_TOKEN"], build.TOKEN_KEY),
        (server["JUPYTER_GATEWAY_AUTH_TOKEN"], build.GATEWAY_TOKEN_KEY),
        (eg["EG_AUTH_TOKEN"], build.GATEWAY_TOKEN_KEY),
    ):
        assert "value" not in env
        assert env["valueFrom"] == {"secretKeyRef": {"name": s.names.token, "key": key}}


def test_eg_role_is_least_privilege_and_grantable_by_the_operator() -> None:
    s = built(pipeline())
    objs = everything(s)
    role = by_kind(objs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list"]}
    ]
    assert rbac.uncovered(role["rules"]) == []  # the operator holds all of it (escalation prevention)
    binding = by_kind(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": s.names.eg, "namespace": "team-a"}]
    eg_pod = by_kind(objs, "Deployment", s.names.eg)["spec"]["template"]["spec"]
    assert eg_pod["serviceAccountName"] == s.names.eg
    server_pod = by_kind(objs, "Deployment", s.names.server)["spec"]["template"]["spec"]
    assert server_pod["automountServiceAccountToken"] is False


def test_eg_deployment_configures_shared_namespace_timeouts_culling_and_offered_kernels() -> None:
    s = built(pipeline(session={"enabled": True, "kernels": [{"name": "py"}, {"name": "py-gpu"}]}))
    deployment = by_kind(build.objects(s, "d"), "Deployment", s.names.eg)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == Settings().eg_image == "elyra/enterprise-gateway:3.2.3"
    env = env_of(deployment)
    assert env["EG_SHARED_NAMESPACE"]["value"] == "True"
    assert env["EG_NAMESPACE"]["value"] == "team-a"
    assert env["EG_KERNEL_LAUNCH_TIMEOUT"]["value"] == "120"
    assert "DOCKER_HOST" not in env
    command = container["args"]
    assert command[:2] == ["jupyter", "enterprisegateway"]
    assert '--KernelSpecManager.whitelist=["py", "py-gpu"]' in command
    assert "--RemoteMappingKernelManager.default_kernel_name=py" in command
    assert "--RemoteMappingKernelManager.cull_idle_timeout=3600" in command
    assert "--RemoteMappingKernelManager.cull_interval=60" in command


def test_culling_and_launch_timeout_come_from_settings() -> None:
    settings = Settings.from_env(
        {
            "ORCHEST_KERNEL_CULL_IDLE_SECONDS": "0",
            "ORCHEST_KERNEL_CULL_INTERVAL_SECONDS": "30",
            "ORCHEST_KERNEL_LAUNCH_TIMEOUT_SECONDS": "45",
        }
    )
    options = session.options(settings)
    assert "--RemoteMappingKernelManager.cull_idle_timeout=0" in build.eg_args(["k"], options)
    assert "--RemoteMappingKernelManager.cull_interval=30" in build.eg_args(["k"], options)
    env = {e["name"]: e.get("value") for e in build.eg_env(namespace="n", token_secret="t", options=options)}
    assert env["EG_KERNEL_LAUNCH_TIMEOUT"] == "45"
    with pytest.raises(ValueError, match="CULL_INTERVAL_SECONDS must be a positive whole number, got '0'"):
        Settings.from_env({"ORCHEST_KERNEL_CULL_INTERVAL_SECONDS": "0"})


def test_kernelspecs_one_key_per_kernel_mounted_beside_egs_own_launchers() -> None:
    s = built(CASES["kubernetes-two-kernels"][0])
    objs = build.objects(s, "d")
    config_map = by_kind(objs, "ConfigMap")
    assert set(config_map["data"]) == {"py", "r"}
    assert json.loads(config_map["data"]["r"])["language"] == "R"
    pod = by_kind(objs, "Deployment", s.names.eg)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == build.KERNELSPEC_VOLUME)
    assert volume["configMap"]["items"] == [
        {"key": "py", "path": "py/kernel.json"},
        {"key": "r", "path": "r/kernel.json"},
    ]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == build.KERNELSPEC_VOLUME]
    # single files, so the image's python_kubernetes/scripts (the launchers) stay visible
    assert [(m["mountPath"], m["subPath"]) for m in mounts] == [
        ("/usr/local/share/jupyter/kernels/py/kernel.json", "py/kernel.json"),
        ("/usr/local/share/jupyter/kernels/r/kernel.json", "r/kernel.json"),
    ]
    annotations = by_kind(objs, "Deployment", s.names.eg)["spec"]["template"]["metadata"]["annotations"]
    assert annotations[build.ANNOTATION_KERNELSPECS] == build.digest(config_map["data"])


def test_server_mounts_the_pvc_and_passes_the_same_mount_to_every_kernel() -> None:
    s = built(pipeline(volume={"claimName": "data", "mountPath": "/work", "subPath": "team/p1"}))
    deployment = by_kind(build.objects(s, "d"), "Deployment", s.names.server)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == Settings().jupyter_server_image
    assert "--ServerApp.root_dir=/work" in container["command"]
    assert pod["volumes"][0] == {"name": "project", "persistentVolumeClaim": {"claimName": "data"}}
    assert container["volumeMounts"][0] == {"name": "project", "mountPath": "/work", "subPath": "team/p1"}
    # images/jupyter-server runs with a read-only root filesystem and keeps HOME in /tmp
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": build.SCRATCH_VOLUME, "mountPath": "/tmp"} in container["volumeMounts"]
    env = env_of(deployment)
    assert env["JUPYTER_GATEWAY_URL"]["value"] == "http://demo-eg.team-a.svc:8888"
    assert env["KERNEL_NAMESPACE"]["value"] == "team-a"
    assert env["KERNEL_USERNAME"]["value"] == "demo"
    assert env["KERNEL_LAUNCH_TIMEOUT"]["value"] == "120"  # sent to EG with each start; matches EG's
    volumes = json.loads(env["KERNEL_VOLUMES"]["value"])
    mounts = json.loads(env["KERNEL_VOLUME_MOUNTS"]["value"])
    assert volumes == pod["volumes"][:1]
    assert mounts == container["volumeMounts"][:1]
    # EG's launcher reads them with yaml.safe_load and wants a list of mappings
    assert yaml.safe_load(env["KERNEL_VOLUMES"]["value"]) == volumes
    kernel_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kernel"},
        "spec": {"containers": [{"name": "k", "image": "k", "volumeMounts": mounts}], "volumes": volumes},
    }
    kubernetes_validate.validate(kernel_pod, K8S_VERSION, strict=True)


def test_docker_swarm_reads_docker_host_from_the_users_secret() -> None:
    s = built(pipeline(session=SWARM), DockerHost("swarm"))
    objs = build.objects(s, "d")
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    assert by_kind(objs, "ServiceAccount")["automountServiceAccountToken"] is False
    eg = by_kind(objs, "Deployment", s.names.eg)
    env = env_of(eg)
    assert env["DOCKER_HOST"]["valueFrom"] == {"secretKeyRef": {"name": "swarm", "key": "DOCKER_HOST"}}
    assert env["EG_DOCKER_NETWORK"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "DOCKER_TLS_VERIFY" not in env
    class_name = json.loads(by_kind(objs, "ConfigMap")["data"]["python"])["metadata"]["process_proxy"]
    assert class_name["class_name"].endswith("DockerSwarmProcessProxy")


def test_docker_tls_files_are_mounted_and_enabled() -> None:
    s = built(pipeline(session=SWARM), DockerHost("swarm", tls=True))
    eg = by_kind(build.objects(s, "d"), "Deployment", s.names.eg)
    env = env_of(eg)
    assert env["DOCKER_TLS_VERIFY"]["value"] == "1"
    assert env["DOCKER_CERT_PATH"]["value"] == build.DOCKER_TLS_DIR
    pod = eg["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == build.DOCKER_TLS_VOLUME)
    assert tls["secret"]["secretName"] == "swarm"
    assert [i["key"] for i in tls["secret"]["items"]] == list(build.DOCKER_TLS_FILES)
    assert {"name": build.DOCKER_TLS_VOLUME, "mountPath": build.DOCKER_TLS_DIR, "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )


def test_token_digest_rolls_pods_only_when_the_secret_changes() -> None:
    s = built(pipeline())
    first = session.token_digest(build.token_secret(s, "a", "b"))
    assert first == session.token_digest(build.token_secret(s, "a", "b"))
    assert first != session.token_digest(build.token_secret(s, "c", "b"))
    for deployment in (o for o in build.objects(s, first) if o["kind"] == "Deployment"):
        assert deployment["spec"]["template"]["metadata"]["annotations"][build.ANNOTATION_TOKENS] == first
