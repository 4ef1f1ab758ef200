"""The release: one version (pyproject.toml) stamped everywhere, and a workflow that publishes what the
manifests name. The workflow runs only on GitHub, so what it relies on is checked here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from release import version
from tests.support.deploy import kustomize

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/release.yml"


def test_every_copy_of_the_version_agrees_with_pyproject() -> None:
    assert version.disagreements() == []
    copies = {c.path for c in version.copies()}
    assert {
        "pyproject.toml",
        "charts/orchest/Chart.yaml",
        "manifests/kustomization.yaml",
        "manifests/operator/deployment.yaml",
        "README.md",
    } <= copies


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files that carry the version, copied."""
    for relative in ("pyproject.toml", "README.md", "charts", "manifests", "images"):
        source = ROOT / relative
        if source.is_dir():
            shutil.copytree(source, tmp_path / relative)
        else:
            shutil.copy(source, tmp_path / relative)
    return tmp_path


def test_stamping_a_new_version_changes_every_copy(checkout: Path) -> None:
    old = version.current(checkout)
    version.stamp("0.2.0-rc.1", checkout)
    assert version.current(checkout) == "0.2.0-rc.1"
    assert version.disagreements(checkout) == []
    chart = yaml.safe_load((checkout / "charts/orchest/Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == "0.2.0-rc.1"
    stamped = [c.path for c in version.copies(checkout)]
    for path in set(stamped):
        assert f":{old}" not in (checkout / path).read_text(), path
    # what `kubectl kustomize manifests` makes of it: install.yaml names the new images only
    images = re.findall(rf"{version.REGISTRY}/[\w-]+:[\w.\-]+", str(kustomize(checkout / "manifests")))
    assert images and {i.rsplit(":", 1)[1] for i in images} == {"0.2.0-rc.1"}
    assert {i.rsplit(":", 1)[0].rsplit("/", 1)[1] for i in images} == set(version.IMAGES)


def test_a_copy_left_behind_is_named(checkout: Path) -> None:
    chart = checkout / "charts/orchest/Chart.yaml"
    chart.write_text(chart.read_text().replace('appVersion: "0.1.0"', 'appVersion: "0.0.9"'))
    assert version.disagreements(checkout) == [
        f"charts/orchest/Chart.yaml: 0.0.9 (pyproject.toml says {version.current(checkout)})"
    ]


@pytest.mark.parametrize("bad", ["v1.2.3", "1.2", "1.2.3 ", "01.2.3", "latest"])
def test_a_version_that_is_not_semver_is_refused(bad: str, checkout: Path, capsys: Any) -> None:
    with pytest.raises(ValueError, match="is not a release version"):
        version.stamp(bad, checkout)
    assert version.main(["--set", bad]) == 2
    assert "is not a release version such as 1.2.3" in capsys.readouterr().err


def test_check_refuses_a_tag_that_is_not_the_version(capsys: Any) -> None:
    assert version.main(["--check", "--tag", f"v{version.current()}"]) == 0
    assert version.main(["--check", "--tag", "v9.9.9"]) == 1
    assert f"tag v9.9.9 is not v{version.current()}" in capsys.readouterr().err
    printed: list[str] = []
    assert version.main([], out=printed.append) == 0 and printed == [version.current()]


# --- the workflow ---------------------------------------------------------------------------------------


def release_workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_release_runs_on_version_tags_after_checking_the_tag() -> None:
    flow = release_workflow()
    assert flow[True] == {"push": {"tags": ["v*"]}}  # YAML reads the key `on` as true
    jobs = flow["jobs"]
    assert 'python -m release.version --check --tag "$GITHUB_REF_NAME"' in runs(jobs["version"])
    assert jobs["images"]["needs"] == "version" and set(jobs["publish"]["needs"]) == {"version", "images"}


def test_release_builds_every_image_for_both_platforms_with_the_tag() -> None:
    job = release_workflow()["jobs"]["images"]
    built = set(job["strategy"]["matrix"]["image"])
    assert built == {p.parent.name for p in (ROOT / "images").glob("*/Dockerfile")}
    assert {f"orchest-{name}" for name in built} == set(version.IMAGES)
    script = runs(job)
    assert '--file "images/$IMAGE/Dockerfile"' in script
    assert "--platform linux/amd64,linux/arm64" in script
    assert '--tag "$REGISTRY/orchest-$IMAGE:$VERSION"' in script and "--push" in script
    assert release_workflow()["env"]["REGISTRY"] == version.REGISTRY
    assert job["permissions"]["packages"] == "write"


def test_release_pushes_the_chart_and_attaches_install_yaml() -> None:
    job = release_workflow()["jobs"]["publish"]
    script = runs(job)
    assert "helm package charts/orchest --destination dist" in script
    assert 'helm push "dist/orchest-$VERSION.tgz" "oci://$REGISTRY/charts"' in script
    assert "kubectl kustomize manifests > dist/install.yaml" in script
    assert re.search(r"gh release create \"\$GITHUB_REF_NAME\" dist/install.yaml", script)
    assert job["permissions"]["contents"] == "write"
    # the README's released install commands point where the workflow publishes
    readme = (ROOT / "README.md").read_text()
    assert f"oci://{version.REGISTRY}/charts/orchest --version {version.current()}" in readme
    assert f"releases/download/v{version.current()}/install.yaml" in readme


def test_make_test_lints_the_workflows() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:.*?(?=^\S)", makefile, re.M | re.S)
    assert test_target and "$(MAKE) lint-workflows" in test_target.group(0)
    assert re.search(r"^lint-workflows:.*\n\t\$\(BIN\)/actionlint ", makefile, re.M)
