"""``orchest convert`` of an Orchest job definition: a Pipeline and a PipelineJob with its grid, schedule,
suspension and history, and a readable line for what cannot be converted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchest_operator.cli import main
from orchest_operator.jobs.schedule import Schedule
from orchest_operator.models import JobDocument, PipelineDocument

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orchest" / "housing-job.json"
FOREST = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
LINEAR = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def convert(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: dict[str, Any]) -> tuple[int, str, str]:
    source = tmp_path / "job.json"
    source.write_text(json.dumps(data))
    code = main(["convert", str(source)])
    out, err = capsys.readouterr()
    return code, out, err


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def test_the_example_job_becomes_a_pipeline_and_a_pipelinejob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    pipeline_doc, job_doc = [d for d in yaml.safe_load_all(out) if d]
    pipeline = PipelineDocument.model_validate(pipeline_doc)
    job = JobDocument.model_validate(job_doc)
    assert job.metadata.name == "nightly-housing-sweep"
    assert job.spec.pipeline_ref.name == pipeline.metadata.name == "housing-prices"
    # what the Pipeline already gives each step stays there; only what the job varies is its matrix
    assert job.spec.matrix == {"test_fraction": [0.2, 0.3], "trees": [50, 100, 200]}
    assert job.spec.parameters == {} and job.spec.include == []
    assert (job.spec.schedule, job.spec.time_zone, job.spec.concurrency_policy.value) == (
        "0 3 * * 1",
        "UTC",
        "Forbid",
    )
    Schedule.parse(job.spec.schedule or "", job.spec.time_zone)
    assert job.spec.batch_history_limit == 5  # 30 retained runs / 6 per batch
    assert not job.spec.suspend
    assert (
        "# Its environment variables are not converted (add them to the Pipeline's env): DATA_BUCKET" in out
    )


def test_a_partial_grid_becomes_include(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = example()
    data["parameters"] = [r for r in data["parameters"] if r[FOREST]["trees"] != 100]
    data["status"] = "PAUSED"
    code, out, err = convert(capsys, tmp_path, data)
    assert code == 0, err
    job = JobDocument.model_validate(list(yaml.safe_load_all(out))[1])
    assert job.spec.matrix == {}
    assert job.spec.include == [
        {"test_fraction": 0.2, "trees": 50},
        {"test_fraction": 0.2, "trees": 200},
        {"test_fraction": 0.3, "trees": 50},
        {"test_fraction": 0.3, "trees": 200},
    ]
    assert job.spec.suspend


def test_a_job_without_schedule_runs_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = example()
    data["schedule"] = None
    data["max_retained_pipeline_runs"] = -1
    code, out, _ = convert(capsys, tmp_path, data)
    job = list(yaml.safe_load_all(out))[1]
    assert code == 0 and "schedule" not in job["spec"] and "batchHistoryLimit" not in job["spec"]


def bad(mutate: Any) -> dict[str, Any]:
    data = copy.deepcopy(example())
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            bad(lambda d: d["strategy_json"][LINEAR]["parameters"].update(model='["linear", "ridge"]')),
            "parameter 'model': the job sets it for step train-model, but step train-model-2 also declares",
        ),
        (bad(lambda d: d.update(schedule="61 * * * *")), "schedule: '61 * * * *': Bad minute"),
        (
            bad(
                lambda d: d["strategy_json"]["pipeline_parameters"]["parameters"].update(
                    x=json.dumps(list(range(50)))
                )
            ),
            "runs 300 combinations; a PipelineJob runs at most 256",
        ),
        (bad(lambda d: d["strategy_json"][FOREST]["parameters"].update(trees="[50,")), "is not a JSON list"),
        (bad(lambda d: d.update(parameters=[3])), "parameters[0]: expected an object"),
        (bad(lambda d: d["pipeline_definition"].update(steps={})), "steps: expected an object of steps"),
    ],
)
def test_what_cannot_be_converted_is_one_line_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: dict[str, Any], fragment: str
) -> None:
    if fragment.startswith("runs 300"):
        data["parameters"] = None  # the grid alone decides
    code, out, err = convert(capsys, tmp_path, data)
    assert code == 1 and out == ""
    assert fragment in err, err
