"""Reading what orchest installs: YAML files, the kustomize base (``kubectl kustomize``) and the Helm chart
(helm-python-sdk, no helm binary), and validating objects against the Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CHART = ROOT / "charts/orchest"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the schemas know.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def file_objects(path: Path) -> list[dict[str, Any]]:
    return documents(path.read_text())


def validate(obj: dict[str, Any]) -> None:
    """Strict validation (unknown fields are errors) against every supported Kubernetes version."""
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def kustomize(folder: Path = MANIFESTS) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of ``folder``: kubectl embeds kustomize (the machine image and CI runners have
    kubectl; there is no kustomize on PyPI or in Debian)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (which embeds kustomize) is not installed")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return documents(done.stdout)


def render_chart(
    values: dict[str, Any] | None = None, *, release: str = "orchest", namespace: str = "orchest-system"
) -> dict[str, list[dict[str, Any]]]:
    """Template path → objects, as ``helm install`` would create them, with the CRDs under ``crds/``."""
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
        crds = {f"crds/{c['filename']}": documents(c["data"]) for c in chart.crds}
    templates = {path: documents(text) for path, text in rendered.items() if not path.endswith(".txt")}
    return {**templates, **crds}


def chart_objects(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return [obj for objs in render_chart(values, **kwargs).values() for obj in objs]


def notes(values: dict[str, Any] | None = None) -> str:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name="orchest", namespace="orchest-system", is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"{len(matches)} objects of kind {kind} named {name}"
    return matches[0]
