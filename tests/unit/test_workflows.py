"""The GitHub workflows refer to what exists: the Makefile targets, every image, the chart and its values
(they run on GitHub, not here, so a rename would otherwise only show up there)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from bench.cli import parser
from tests.support.deploy import CHART

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github/workflows"


def workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def scripts(flow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for job in flow["jobs"].values() for step in job["steps"])


def test_ci_lints_and_runs_make_test() -> None:
    text = scripts(workflow("ci.yml"))
    assert "make lint" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lint:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def makefile_images() -> set[str]:
    found = re.search(r"^IMAGES := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found
    return set(found.group(1).split())


def test_ci_tests_the_images_as_ci_run_does() -> None:
    assert "make test-images" in scripts(workflow("ci.yml"))
    assert "make test-images" in (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^test-images:", (ROOT / "Makefile").read_text(), re.M)


def test_e2e_builds_every_image_with_make_images_and_loads_it() -> None:
    text = scripts(workflow("e2e.yml"))
    assert "docker build" not in text
    assert re.search(r"^make images REGISTRY=\"\$REGISTRY\" TAG=\"\$TAG\"$", text, re.M)
    built = makefile_images()
    assert built == {p.parent.name for p in (ROOT / "images").glob("*/Dockerfile")}
    loaded = re.search(r"for image in ([\w\s-]+); do", text)
    assert loaded and set(loaded.group(1).split()) == {f"orchest-{name}" for name in built}


def test_e2e_installs_the_chart_with_values_that_exist() -> None:
    flow = workflow("e2e.yml")
    text = scripts(flow)
    assert "helm install orchest charts/orchest" in text and (CHART / "Chart.yaml").is_file()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in re.findall(r"--set ([\w.]+)=", text):
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"--set {path}: no such value in values.yaml"
            node = node[part]
    run = next(s for j in flow["jobs"].values() for s in j["steps"] if "tests/e2e" in s.get("run", ""))
    assert run["env"]["ORCHEST_E2E"] == "1"
    assert "orchest-step-runner" in run["env"]["ORCHEST_E2E_STEP_IMAGE"]


def test_e2e_benchmarks_use_options_that_exist() -> None:
    """The cluster benchmarks run only on GitHub: their command line must parse, and the metrics they
    scrape must be the port the chart serves."""
    text = scripts(workflow("e2e.yml"))
    command = re.search(r"\.venv/bin/python -m bench (.+?)\n\s*(?:\n|$)", text.replace("\\\n", " "), re.S)
    assert command, "no benchmark step in e2e.yml"
    args = parser().parse_args(shlex.split(command.group(1)))
    assert (
        args.kubeconfig
        and args.metrics_url
        and set(args.names) <= {"chain", "fanout", "concurrent", "status"}
    )
    port = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["port"]
    assert f'port-forward "pod/${{leader%_*}}" {port}:{port}' in text  # the Lease holder's pod
    assert f"127.0.0.1:{port}/metrics" in command.group(1)
