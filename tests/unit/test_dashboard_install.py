"""The dashboard in a cluster: its read-only RBAC from the rules table, the kustomize component and the
chart's ``dashboard.enabled``, each passing Pod Security "restricted" and running a command that parses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from orchest_operator import rbac, settings
from orchest_operator.cli import build_parser
from orchest_operator.dashboard import state
from orchest_operator.podsecurity import restricted_violations
from tests.support.deploy import MANIFESTS, chart_objects, find, kustomize, validate

READ_ONLY = {"get", "list", "watch"}


def test_dashboard_rules_are_read_only_and_cover_what_it_reads() -> None:
    for p in rbac.DASHBOARD_RULES:
        assert set(p.verbs) <= READ_ONLY and p.why.strip(), p
    for resource in (state.RUNS, state.PIPELINES, state.JOBS, state.PODS):
        for verb in ("list", "watch"):
            assert rbac.allows(resource.group, resource.plural, verb, rbac.DASHBOARD_RULES), resource
    assert rbac.allows("", "pods/log", "get", rbac.DASHBOARD_RULES)
    assert not any(p.resource == "secrets" for p in rbac.DASHBOARD_RULES), "no credential to hand out"
    for obj in rbac.dashboard_objects():
        validate(obj)


def _dashboard(objects: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = find(objects, "Deployment", name)
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def test_kustomize_component_adds_a_restricted_read_only_dashboard() -> None:
    with tempfile.TemporaryDirectory() as overlay:
        relative = Path(os.path.relpath(MANIFESTS, overlay))
        Path(overlay, "kustomization.yaml").write_text(
            f"resources: [{relative}]\ncomponents: [{relative / 'components/dashboard'}]\n"
        )
        objects = kustomize(Path(overlay))
    deployment, container = _dashboard(objects, rbac.DASHBOARD_NAME)
    assert deployment["metadata"]["namespace"] == "orchest-system"
    assert restricted_violations(deployment) == []
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    args = build_parser().parse_args(container["args"])
    assert args.all_namespaces and args.address == "0.0.0.0" and args.port == 8765
    assert container["image"] == settings.image("orchest-operator"), "the operator's image, of this release"
    role = find(objects, "ClusterRole", rbac.DASHBOARD_NAME)
    assert {v for rule in role["rules"] for v in rule["verbs"]} == READ_ONLY
    binding = find(objects, "ClusterRoleBinding", rbac.DASHBOARD_NAME)
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": rbac.DASHBOARD_NAME,
        "namespace": "orchest-system",
    }
    service = find(objects, "Service", rbac.DASHBOARD_NAME)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    for obj in objects:
        validate(obj)


def test_chart_installs_the_dashboard_only_when_enabled() -> None:
    assert not [o for o in chart_objects() if "dashboard" in o["metadata"]["name"]]
    objects = chart_objects({"dashboard": {"enabled": True, "namespaces": ["team-a"], "port": 9000}})
    deployment, container = _dashboard(objects, "orchest-dashboard")
    assert restricted_violations(deployment) == []
    args = build_parser().parse_args(container["args"])
    assert (args.namespaces, args.port, args.address) == (["team-a"], 9000, "0.0.0.0")
    assert container["ports"] == [{"name": "http", "containerPort": 9000}]
    role = find(objects, "Role", "orchest-dashboard")
    assert role["metadata"]["namespace"] == "team-a", "only the namespace it shows"
    assert role["rules"] == rbac.policy_rules(rbac.DASHBOARD_RULES)
    binding = find(objects, "RoleBinding", "orchest-dashboard")
    assert binding["subjects"][0]["namespace"] == "orchest-system"
    assert not [o for o in objects if o["kind"] == "ClusterRole" and "dashboard" in o["metadata"]["name"]]
    everywhere = chart_objects({"dashboard": {"enabled": True}})
    assert find(everywhere, "ClusterRole", "orchest-dashboard")["rules"] == role["rules"]
    assert build_parser().parse_args(_dashboard(everywhere, "orchest-dashboard")[1]["args"]).all_namespaces
    service = find(objects, "Service", "orchest-dashboard")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    operator_service = find(objects, "Service", "orchest-operator-metrics")
    assert operator_service["spec"]["selector"].get("app.kubernetes.io/component") == "operator"
    for obj in objects:
        validate(obj)
