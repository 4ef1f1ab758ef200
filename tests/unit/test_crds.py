"""The committed CRDs are exactly what the models generate, in both places, and their schemas are
structural (what the API server demands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchest_operator.cli import main
from orchest_operator.cli.crds import TARGETS, rendered
from orchest_operator.crds import all_crds

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(all_crds())


@pytest.mark.parametrize("target", TARGETS, ids=str)
@pytest.mark.parametrize("name", FILES)
def test_committed_crds_match_the_models(target: Path, name: str) -> None:
    committed = ROOT / target / name
    assert committed.exists(), f"{committed} is missing: run `make crds`"
    assert committed.read_text() == rendered()[name], f"{committed} drifted from the models: run `make crds`"


def test_manifests_and_chart_hold_the_same_crds() -> None:
    manifests, chart = (ROOT / t for t in TARGETS)
    assert sorted(p.name for p in manifests.glob("*.yaml")) == sorted(p.name for p in chart.glob("*.yaml"))
    for path in manifests.glob("*.yaml"):
        assert path.read_text() == (chart / path.name).read_text()


def _schema_nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node below ``node`` (properties, items, additionalProperties), with its path."""
    found = [(path or ".", node)]
    for name, child in node.get("properties", {}).items():
        found += _schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _schema_nodes(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("name", FILES)
def test_schema_is_structural(name: str) -> None:
    crd = all_crds()[name]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    assert "$ref" not in text
    assert "anyOf" not in text
    assert "$defs" not in text
    for path, node in _schema_nodes(schema):
        assert node.get("additionalProperties") is not True, path
        assert "title" not in node, path
        free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or free, f"{path} has no type"


@pytest.mark.parametrize("name", FILES)
def test_crd_is_a_valid_kubernetes_object(name: str) -> None:
    kubernetes_validate.validate(all_crds()[name], "1.31", strict=True)


def test_names_columns_and_status() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in all_crds().values()}
    assert set(crds) == {"Pipeline", "PipelineRun", "PipelineJob"}
    pipeline, run, job = crds["Pipeline"], crds["PipelineRun"], crds["PipelineJob"]
    assert pipeline["metadata"]["name"] == "pipelines.orchest.io"
    assert job["metadata"]["name"] == "pipelinejobs.orchest.io"
    assert pipeline["spec"]["names"]["shortNames"] == ["opl"]
    assert run["spec"]["names"]["shortNames"] == ["oplr"]
    assert job["spec"]["names"]["shortNames"] == ["oplj"]
    for crd in (pipeline, run, job):
        version = crd["spec"]["versions"][0]
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == ["orchest"]
        assert version["name"] == "v1alpha1"
        assert version["subresources"] == {"status": {}}
    columns = {
        kind: [column["name"] for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        for kind, crd in crds.items()
    }
    assert columns == {
        "Pipeline": ["Steps", "Session", "Age"],
        "PipelineRun": ["Pipeline", "Phase", "Progress", "Start", "Completion", "Message"],
        "PipelineJob": ["Pipeline", "Schedule", "Suspend", "Active", "Last", "Next", "Last Schedule"],
    }


def test_schema_carries_defaults_enums_and_bounds() -> None:
    spec = all_crds()["orchest.io_pipelineruns.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    run = spec["properties"]["spec"]["properties"]
    assert run["failurePolicy"]["default"] == "FailFast"
    assert run["failurePolicy"]["enum"] == ["FailFast", "Continue"]
    assert run["parallelism"]["minimum"] == 0
    rules = [r["rule"] for r in spec["properties"]["spec"]["x-kubernetes-validations"]]
    assert "self.pipelineRef == oldSelf.pipelineRef" in rules
    pipeline = all_crds()["orchest.io_pipelines.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    steps = pipeline["properties"]["spec"]["properties"]["steps"]
    assert (steps["minItems"], steps["maxItems"]) == (1, 1000)
    retries = steps["items"]["properties"]["retries"]
    assert retries.pop("description")
    assert retries == {"type": "integer", "default": 0, "minimum": 0, "maximum": 10}


def test_orchest_crds_prints_one_stream(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    documents = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["metadata"]["name"] for d in documents] == [
        "pipelines.orchest.io",
        "pipelineruns.orchest.io",
        "pipelinejobs.orchest.io",
    ]


def test_orchest_crds_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--write", "--root", str(tmp_path)]) == 0
    for target in TARGETS:
        for name, text in rendered().items():
            assert (tmp_path / target / name).read_text() == text
    assert len(capsys.readouterr().out.splitlines()) == 2 * len(FILES)


def test_orchest_crds_write_finds_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "charts" / "orchest").mkdir(parents=True)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")
    assert main(["crds", "--write"]) == 0
    assert (tmp_path / "charts" / "orchest" / "crds" / FILES[0]).exists()


def test_orchest_crds_write_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crds", "--write"]) == 1
    where = tmp_path.resolve()
    assert capsys.readouterr().err == (
        f"orchest: no repository root (with manifests/ and charts/orchest/) above {where}; use --root\n"
    )


@pytest.mark.parametrize("name", FILES)
def test_every_field_is_described_for_kubectl_explain(name: str) -> None:
    """``kubectl explain`` prints a field's description: a field without one documents nothing."""
    schema = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undescribed = [
        f"{path}.{field}"
        for path, node in _schema_nodes(schema)
        for field, child in node.get("properties", {}).items()
        if not child.get("description")
    ]
    assert schema.get("description"), "the kind itself has no description"
    assert undescribed == [], f"fields without a description (add a docstring under the field): {undescribed}"
