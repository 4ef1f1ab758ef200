"""The step-runner image runs the quickstart's steps as step Jobs do: each step's container is built by
orchest's Job builder (`builders.job.step_job`) and run by Docker with that pod's security context: uid
1000 with fsGroup, read-only root, every capability dropped, no new privileges, an emptyDir /tmp, and the
pipeline directory mounted at the volume's mount path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from orchest_operator.builders.job import JobOptions, step_job
from orchest_operator.models import PipelineSpec, Priority
from tests.images.pods import ROOT, PodRun, docker, hand_over, image, run_args
from tests.support.notebooks import write_notebook

QUICKSTART = ROOT / "examples" / "quickstart"
RUN = {
    "apiVersion": "orchest.io/v1alpha1",
    "kind": "PipelineRun",
    "metadata": {"name": "quickstart-1", "namespace": "team", "uid": "u-1"},
    "spec": {"pipelineRef": {"name": "quickstart"}},
}


def project(tmp_path: Path) -> Path:
    """The pipeline volume: the quickstart's files, owned by the pod's uid as fsGroup would have it."""
    directory = tmp_path / "volume"
    shutil.copytree(QUICKSTART, directory, ignore=shutil.ignore_patterns(".orchest", "data"))
    hand_over(directory)
    return directory


def quickstart_spec(**changes: Any) -> PipelineSpec:
    spec = yaml.safe_load((QUICKSTART / "pipeline.yaml").read_text())["spec"]
    return PipelineSpec.model_validate({**spec, "volume": {"claimName": "quickstart"}, **changes})


def run_step(spec: PipelineSpec, step: str, volume: Path, termination: Path) -> tuple[int, str]:
    job = step_job(
        run=RUN,
        spec=spec,
        step_name=step,
        parameters={},
        priority=Priority.BACKGROUND,
        options=JobOptions(default_image=image("step-runner")),
    )
    pod = job["spec"]["template"]["spec"]
    how = PodRun(claims={"quickstart": volume}, termination_log=termination)
    options = run_args(pod, pod["containers"][0], how)
    done = docker("run", "--rm", *options, check=False, timeout=300, merge=True)
    return done.returncode, done.stdout


def termination_file(tmp_path: Path, step: str) -> Path:
    path = tmp_path / f"{step}.termination"
    path.touch()
    hand_over(path)
    return path


def test_the_quickstart_runs_step_by_step_under_the_pods_security_context(tmp_path: Path) -> None:
    volume, spec = project(tmp_path), quickstart_spec()
    logs = {}
    for step in ["generate", "fit", "explore", "report"]:  # an order the DAG allows
        code, logs[step] = run_step(spec, step, volume, termination_file(tmp_path, step))
        assert code == 0, f"{step} failed:\n{logs[step][-3000:]}"
    for step, log in logs.items():
        lines = log.splitlines()
        assert lines[0] == f"orchest: step {step} of run quickstart-1: {spec.step(step).file}"
        assert lines[-1] == f"orchest: step {step} succeeded"
        assert all(line.startswith("orchest: ") for line in lines if "orchest: step" in line), log
        assert "without encryption" not in log  # the kernel's TCP warning
    data = volume / "data"
    assert len((data / "points.csv").read_text().splitlines()) == 201  # pipeline parameter points: 200
    fit = json.loads((data / "fit.json").read_text())
    assert (fit["points"], fit["seed"]) == (200, 7)
    assert abs(fit["slope"] - 2) < 0.1
    summary = json.loads((data / "summary.json").read_text())
    assert len(summary["histogram"]) == 8 and sum(summary["histogram"]) == 200  # step parameter bins: 8
    assert "Quickstart report: run quickstart-1, step report" in (data / "report.txt").read_text()
    assert "Summary (explore.ipynb):" in logs["report"]
    for step in ["generate", "explore"]:
        assert (volume / ".orchest" / "runs" / "quickstart-1" / f"{step}.ipynb").is_file()


def test_a_failing_notebook_leaves_its_cell_and_exception_in_the_termination_message(tmp_path: Path) -> None:
    volume, step = project(tmp_path), "broken"
    cells = [("parameters", "points = 1"), "x = points + 1", "raise KeyError(x)"]
    write_notebook(volume / "broken.ipynb", *cells)
    hand_over(volume / "broken.ipynb")
    spec = quickstart_spec(steps=[{"name": step, "file": "broken.ipynb"}])
    termination = termination_file(tmp_path, step)
    code, log = run_step(spec, step, volume, termination)
    assert code == 1, log[-3000:]
    message = json.loads(termination.read_text())
    assert message == {
        "message": "cell 2 raised KeyError: 201",
        "cell": 2,
        "ename": "KeyError",
        "evalue": "201",
    }
    assert "orchest: step failed: cell 2 raised KeyError: 201" in log
