"""Everything under manifests/: valid objects, a kustomize base that renders and lists every file, an
operator Deployment that passes Pod Security "restricted", and examples that fit together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchest_operator import rbac, settings
from orchest_operator.cli import build_parser
from orchest_operator.jobs.schedule import Schedule
from orchest_operator.models import JobDocument, PipelineDocument, PipelineJobSpec, RunDocument
from orchest_operator.podsecurity import restricted_violations
from tests.support.deploy import MANIFESTS, file_objects, find, kustomize, validate

# Kinds of other projects' CRDs, which the Kubernetes schemas do not know.
FOREIGN = {"Application"}
OURS = {"Pipeline": PipelineDocument, "PipelineRun": RunDocument, "PipelineJob": JobDocument}
# swarm/ is a Docker Swarm stack (Enterprise Gateway with DockerSwarm kernels), not Kubernetes.
NOT_KUBERNETES = {"swarm"}
# Installed by the kustomize base: everything but the examples and the Argo CD extras.
NOT_INSTALLED = {"examples", "argocd"}
FILES = sorted(
    p
    for p in MANIFESTS.rglob("*.yaml")
    if p.name != "kustomization.yaml" and p.relative_to(MANIFESTS).parts[0] not in NOT_KUBERNETES
)


def relative(path: Path) -> str:
    return path.relative_to(MANIFESTS).as_posix()


@pytest.mark.parametrize("path", FILES, ids=relative)
def test_every_manifest_is_valid(path: Path) -> None:
    objects = file_objects(path)
    assert objects, f"{relative(path)} holds no object"
    for obj in objects:
        if obj["kind"] in OURS:
            OURS[obj["kind"]].model_validate(obj)
        elif obj["kind"] not in FOREIGN:
            validate(obj)


def test_kustomization_lists_every_install_file() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "orchest-system"
    installed = {relative(p) for p in FILES if p.relative_to(MANIFESTS).parts[0] not in NOT_INSTALLED}
    assert sorted(kustomization["resources"]) == sorted(installed)


def test_kustomize_renders_into_orchest_system() -> None:
    objects = kustomize()
    for obj in objects:
        validate(obj)
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PriorityClass",
    }
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in cluster_scoped else "orchest-system"), obj["metadata"]
    binding = find(objects, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "orchest-system"
    assert find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{settings.REGISTRY}/orchest-operator:{settings.release()}"
    )


def operator_deployment() -> dict[str, Any]:
    return find(file_objects(MANIFESTS / "operator/deployment.yaml"), "Deployment")


def test_operator_pod_passes_pod_security_restricted() -> None:
    assert restricted_violations(operator_deployment()) == []


def test_operator_deployment_is_two_hardened_replicas_electing_a_leader() -> None:
    deployment = operator_deployment()
    assert deployment["spec"]["replicas"] == 2
    # a new pod is up (standing by) before an old one stops and hands its Lease over
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    args = build_parser().parse_args(container["args"])
    assert args.leader_elect and not args.standalone and args.all_namespaces and args.metrics_port == 9090
    # the Lease the leader-election Role names; its namespace is the pod's own (from its service account)
    role = find(file_objects(MANIFESTS / "rbac/leader_election_role.yaml"), "Role")
    assert args.leader_elect_resource_name == rbac.LEASE
    assert [r.get("resourceNames") for r in role["rules"]] == [None, [rbac.LEASE]]
    assert args.leader_elect_resource_namespace is None
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert (
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert (
        pod["serviceAccountName"]
        == find(file_objects(MANIFESTS / "rbac/service_account.yaml"), "ServiceAccount")["metadata"]["name"]
    )


def test_operator_env_is_what_settings_read_and_matches_the_defaults() -> None:
    env = {
        e["name"]: e["value"]
        for e in operator_deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert set(env) == {getattr(settings, n) for n in dir(settings) if n.startswith("ENV_")}
    assert settings.Settings.from_env(env) == settings.Settings()


def test_disruption_budget_keeps_a_replica_through_a_drain() -> None:
    budget = find(file_objects(MANIFESTS / "operator/pdb.yaml"), "PodDisruptionBudget")
    deployment = operator_deployment()
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == deployment["spec"]["replicas"] - 1


def test_metrics_service_selects_the_operator_pod() -> None:
    service = find(file_objects(MANIFESTS / "operator/service.yaml"), "Service")
    pod = operator_deployment()["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_namespace_enforces_pod_security_restricted() -> None:
    namespace = find(file_objects(MANIFESTS / "namespace.yaml"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_priority_classes_are_the_ones_step_jobs_name() -> None:
    from orchest_operator.builders.job import PRIORITY_CLASSES

    classes = {o["metadata"]["name"]: o for o in file_objects(MANIFESTS / "priorityclasses.yaml")}
    assert set(classes) == set(PRIORITY_CLASSES.values())
    assert classes["orchest-interactive"]["value"] > classes["orchest-background"]["value"]
    assert not any(c["globalDefault"] for c in classes.values())


# --- examples -----------------------------------------------------------------------------------------

EXAMPLES = MANIFESTS / "examples"
QUICKSTART = MANIFESTS.parent / "examples/quickstart"


def test_example_pipeline_is_the_quickstart_on_the_example_volume() -> None:
    pipeline = find(file_objects(EXAMPLES / "pipeline.yaml"), "Pipeline")
    local = yaml.safe_load((QUICKSTART / "pipeline.yaml").read_text())
    volume = pipeline["spec"].pop("volume")
    assert pipeline["spec"] == local["spec"]
    assert pipeline["metadata"]["name"] == local["metadata"]["name"]
    assert (
        volume["claimName"]
        == find(file_objects(EXAMPLES / "pvc.yaml"), "PersistentVolumeClaim")["metadata"]["name"]
    )
    for step in pipeline["spec"]["steps"]:
        assert (QUICKSTART / step["file"]).is_file(), step["file"]


def test_example_run_and_seed_fit_the_pipeline() -> None:
    run = find(file_objects(EXAMPLES / "pipelinerun.yaml"), "PipelineRun")
    assert run["spec"]["pipelineRef"]["name"] == "quickstart"
    seed = find(file_objects(EXAMPLES / "seed.yaml"), "Job")
    assert restricted_violations(seed) == []
    pod = seed["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "orchest-quickstart"
    assert pod["containers"][0]["command"][-2:] == ["/opt/orchest/examples/quickstart/.", "/project/"]


def test_example_job_fits_the_pipeline_and_the_model() -> None:
    job = find(file_objects(EXAMPLES / "pipelinejob.yaml"), "PipelineJob")
    spec = PipelineJobSpec.model_validate(job["spec"])
    pipeline = find(file_objects(EXAMPLES / "pipeline.yaml"), "Pipeline")
    assert spec.pipeline_ref.name == pipeline["metadata"]["name"]
    assert set(spec.matrix) <= set(pipeline["spec"]["parameters"])
    Schedule.parse(spec.schedule or "", spec.time_zone)
