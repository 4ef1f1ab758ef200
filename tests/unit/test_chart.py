"""The Helm chart, rendered and linted with helm-python-sdk (Helm's own Go code, no helm binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from orchest_operator import rbac, settings
from orchest_operator.cli import build_parser
from orchest_operator.podsecurity import restricted_violations
from tests.support.deploy import CHART, chart_objects, find, kustomize, notes, render_chart, validate

CI_VALUES = yaml.safe_load((CHART / "ci/namespaced-values.yaml").read_text())


def key(obj: dict[str, Any]) -> tuple[str, str, str | None]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(objects)["env"]}


@pytest.mark.parametrize("values", [None, CI_VALUES], ids=["defaults", "ci-values"])
def test_lint_is_clean(values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace="orchest-system", kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", [None, CI_VALUES], ids=["defaults", "ci-values"])
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any] | None) -> None:
    objects = chart_objects(values)
    for obj in objects:
        validate(obj)
    assert len({key(o) for o in objects}) == len(objects), "no object is rendered twice"
    assert restricted_violations(find(objects, "Deployment")) == []


@pytest.mark.parametrize("values", [None, CI_VALUES], ids=["defaults", "ci-values"])
def test_operator_args_are_accepted_by_orchest_operator(values: dict[str, Any] | None) -> None:
    spec = container(chart_objects(values))
    assert spec["command"] == ["orchest"]
    args = build_parser().parse_args(spec["args"])
    assert args.leader_elect and not args.standalone
    assert args.leader_elect_resource_namespace is None  # the pod's own, from its service account
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    port = int(args.liveness.rsplit(":", 1)[1].split("/")[0])
    assert spec["livenessProbe"]["httpGet"]["port"] == "health"
    assert {p["name"]: p["containerPort"] for p in spec["ports"]}["health"] == port


def test_defaults_install_cluster_wide_with_the_tables_rules() -> None:
    objects = chart_objects()
    args = container(objects)["args"]
    assert "--all-namespaces" in args and "--metrics-port" in args
    assert find(objects, "ClusterRole", "orchest-operator")["rules"] == rbac.operator_cluster_role()["rules"]
    assert {o["metadata"]["name"] for o in objects if o["kind"] in ("Role", "RoleBinding")} == {
        "orchest-operator-leader-election"
    }
    binding = find(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "orchest-operator", "namespace": "orchest-system"}
    ]
    edit = find(objects, "ClusterRole", "orchest-edit")
    assert edit["rules"] == rbac.user_cluster_roles()[0]["rules"]
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "PriorityClass"} == {
        "orchest-interactive",
        "orchest-background",
    }


def test_leader_election_role_names_the_releases_own_lease() -> None:
    objects = chart_objects({"priorityClasses": {"create": False}}, release="lab", namespace="lab-system")
    args = build_parser().parse_args(container(objects)["args"])
    assert args.leader_elect_resource_name == "lab-orchest-operator"
    role = find(objects, "Role", "lab-orchest-operator-leader-election")
    expected = [
        {**r, "resourceNames": ["lab-orchest-operator"]} if "resourceNames" in r else r
        for r in rbac.own_namespace_rules()
    ]
    assert role["metadata"]["namespace"] == "lab-system" and role["rules"] == expected
    binding = find(objects, "RoleBinding", "lab-orchest-operator-leader-election")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lab-orchest-operator", "namespace": "lab-system"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_two_replicas_roll_and_keep_one_through_a_drain() -> None:
    objects = chart_objects()
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    budget = find(objects, "PodDisruptionBudget")
    assert (
        budget["spec"]["selector"] == deployment["spec"]["selector"] and budget["spec"]["maxUnavailable"] == 1
    )
    env_values = env(objects)
    assert [
        env_values[f"ORCHEST_LEADER_ELECTION_{n}_SECONDS"]
        for n in ("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD")
    ] == ["15", "10", "2"]


def test_standalone_is_one_replica_recreated_without_lease_or_budget() -> None:
    objects = chart_objects({"leaderElection": {"enabled": False}, "replicas": 1})
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    args = build_parser().parse_args(container(objects)["args"])
    assert args.standalone and not args.leader_elect
    assert not [o for o in objects if o["kind"] in ("PodDisruptionBudget", "Role", "RoleBinding")]
    assert "affinity" not in deployment["spec"]["template"]["spec"]
    with pytest.raises(helm_python.HelmError, match=r"replicas above 1 need leaderElection\.enabled=true"):
        render_chart({"leaderElection": {"enabled": False}})


@pytest.mark.parametrize(
    "timings",
    [
        {"renewDeadlineSeconds": 15},
        {"retryPeriodSeconds": 10},
        {"leaseDurationSeconds": 5, "renewDeadlineSeconds": 8, "retryPeriodSeconds": 1},
    ],
)
def test_lease_timings_that_cannot_work_fail_the_install(timings: dict[str, int]) -> None:
    with pytest.raises(
        helm_python.HelmError, match="retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds"
    ):
        render_chart({"leaderElection": timings})


def test_ci_values_watch_two_namespaces_with_roles_only_there() -> None:
    objects = chart_objects(CI_VALUES)
    args = container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args and "--metrics-port" not in args and "--verbose" in args
    assert find(objects, "ClusterRole")["rules"] == rbac.cluster_rules()
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "orchest-operator"]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert all(r["rules"] == rbac.namespaced_rules() for r in roles)
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert [b["subjects"][0]["namespace"] for b in bindings] == ["orchest-system"] * 3
    assert not [o for o in objects if o["kind"] in ("PriorityClass", "Service")]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"] == ["orchest-operator"]


def test_ci_values_reach_the_pod() -> None:
    objects = chart_objects(CI_VALUES)
    pod = find(objects, "Deployment")["spec"]["template"]
    assert container(objects)["image"] == "registry.example.com/orchest/operator:0.1.0-rc1"
    assert env(objects) == {
        "ORCHEST_STEP_RUNNER_IMAGE": "registry.example.com/orchest/step-runner:0.1.0-rc1",
        "ORCHEST_DEFAULT_STEP_IMAGE": "registry.example.com/science/notebooks:2026.11",
        "ORCHEST_EG_IMAGE": "registry.example.com/mirror/enterprise-gateway:3.2.3",
        "ORCHEST_JUPYTER_SERVER_IMAGE": "registry.example.com/orchest/jupyter-server:0.1.0",
        "ORCHEST_SESSION_TIMEOUT_SECONDS": "900",
        "ORCHEST_KERNEL_LAUNCH_TIMEOUT_SECONDS": "600",
        "ORCHEST_KERNEL_CULL_IDLE_SECONDS": "0",
        "ORCHEST_KERNEL_CULL_INTERVAL_SECONDS": "60",
        "ORCHEST_PRIORITY_CLASSES": "false",
        "ORCHEST_STEP_EVENTS_MAX_STEPS": "100",
        "ORCHEST_STUCK_CHECK_AFTER_SECONDS": "5",
        "ORCHEST_STUCK_CHECK_EVERY_SECONDS": "10",
        "ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS": "30",
        "ORCHEST_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20",
        "ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "2.5",
        "TZ": "Europe/Amsterdam",
    }
    for name in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert pod["spec"][name] == CI_VALUES[name]
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["annotations"] == CI_VALUES["podAnnotations"]
    assert find(objects, "Deployment")["spec"]["replicas"] == 3
    assert container(objects)["resources"] == CI_VALUES["resources"]
    assert (
        find(objects, "ServiceAccount")["metadata"]["annotations"]
        == CI_VALUES["serviceAccount"]["annotations"]
    )


def test_operator_env_is_what_settings_read() -> None:
    values = env(chart_objects())
    names = {getattr(settings, n) for n in dir(settings) if n.startswith("ENV_")}
    assert set(values) == names
    assert settings.Settings.from_env(values) == settings.Settings()


def test_selector_matches_the_pod_and_the_service() -> None:
    objects = chart_objects()
    deployment = find(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"], find(objects, "Service")["spec"]["selector"]]
    for selector in selectors:
        assert selector.items() <= labels.items()


def test_a_second_release_gets_its_own_names() -> None:
    objects = chart_objects({"priorityClasses": {"create": False}}, release="lab", namespace="lab-system")
    names = {o["metadata"]["name"] for o in objects if o["kind"] != "CustomResourceDefinition"}
    assert names == {
        "lab-orchest-operator",
        "lab-orchest-operator-leader-election",
        "lab-orchest-operator-metrics",
        "lab-orchest-edit",
        "lab-orchest-view",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"session": {"timeoutSeconds": "soon"}}, "at '/session/timeoutSeconds': got string, want integer"),
        ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"metrics": {"enabled": "yes"}}, "at '/metrics/enabled': got string, want boolean"),
        ({"priorityClasses": {"interactive": {"preemptionPolicy": "Sometimes"}}}, "preemptionPolicy"),
        ({"imag": {"tag": "x"}}, "additional properties 'imag' not allowed"),
        ({"leaderElection": {"retryPeriodSeconds": 0}}, "/leaderElection/retryPeriodSeconds"),
        ({"replicas": 0}, "/replicas"),
    ],
)
def test_schema_rejects_wrong_values_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        render_chart(values)
    assert message in str(err.value)


def test_schema_covers_every_value() -> None:
    """Every key of values.yaml is in the schema: the schema is what rejects typos, so it must be whole."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], sub: dict[str, Any], path: str) -> None:
        if "$ref" in sub:
            sub = schema["definitions"][sub["$ref"].rsplit("/", 1)[1]]
        for name, value in node.items():
            assert name in sub.get("properties", {}) or "additionalProperties" in sub, f"{path}{name}"
            if isinstance(value, dict) and name in sub.get("properties", {}):
                walk(value, sub["properties"][name], f"{path}{name}.")

    walk(values, schema, "")


def test_every_value_is_documented() -> None:
    """Each top-level key of values.yaml has a comment right above it (or above its block)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith(("#", " ")) and line.endswith((":", "[]", "{}", "false")):
            above = lines[number - 1] if number else ""
            grouped = above.strip() and not above.startswith("#") and not above.startswith(" ")
            assert above.startswith("#") or grouped, f"values.yaml: {line.split(':')[0]} has no comment"


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == settings.release() == chart["version"]
    assert container(chart_objects())["image"] == f"{settings.REGISTRY}/orchest-operator:{settings.release()}"


def test_notes_say_what_to_do_next() -> None:
    text = notes()
    assert "kubectl -n orchest-system rollout status deployment/orchest-operator" in text
    assert "kubectl apply --server-side -f charts/orchest/crds/" in text
    for path in ("manifests/examples/pvc.yaml", "manifests/examples/pipelinerun.yaml"):
        assert path in text and (Path(CHART).parents[1] / path).is_file()
    assert "team-a, team-b" in notes({"watchNamespaces": ["team-a", "team-b"]})


# --- the chart and the kustomize base install the same thing ------------------------------------------


def test_chart_and_kustomize_base_create_the_same_objects() -> None:
    base = [o for o in kustomize() if o["kind"] != "Namespace"]  # helm --create-namespace makes that one
    chart = chart_objects()
    assert sorted(key(o) for o in chart) == sorted(key(o) for o in base)


def test_chart_and_kustomize_base_run_the_same_operator() -> None:
    base, chart = kustomize(), chart_objects()
    assert container(chart) == container(base)
    base_pod = find(base, "Deployment")["spec"]["template"]["spec"]
    chart_pod = find(chart, "Deployment")["spec"]["template"]["spec"]
    assert {k: v for k, v in chart_pod.items() if k not in ("containers", "affinity")} == {
        k: v for k, v in base_pod.items() if k not in ("containers", "affinity")
    }
    # (Selectors, and so the anti-affinity's, differ: the chart adds the release to them.)
    for kind in ("ClusterRole", "ClusterRoleBinding", "PriorityClass"):
        assert without_metadata(chart, kind) == without_metadata(base, kind), kind


def without_metadata(objects: list[dict[str, Any]], kind: str) -> list[tuple[str, str]]:
    """Objects of ``kind`` by name, compared on everything but their labels and annotations."""
    return sorted(
        (o["metadata"]["name"], yaml.safe_dump({k: v for k, v in o.items() if k != "metadata"}))
        for o in objects
        if o["kind"] == kind
    )
