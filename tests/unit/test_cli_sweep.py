"""``orchest run --matrix``: a local sweep, one isolated run per combination, its table and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchest_operator.cli import main
from orchest_operator.cli.pipeline import parse_matrix
from orchest_operator.jobs import sweep
from orchest_operator.models import PipelineRunSpec, PipelineSpec, RunPhase
from tests.support.notebooks import write_pipeline

TRAIN = (
    "import json, os\n"
    "p = json.loads(os.environ['ORCHEST_PARAMETERS'])\n"
    "open('seen.json', 'w').write(json.dumps(p))\n"
    "if p['alpha'] == 0.2 and p['seed'] == 2 and p.get('strict'):\n"
    "    raise SystemExit('diverged')\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_pipeline(
        tmp_path,
        {"parameters": {"alpha": 0.0, "seed": 0}, "steps": [{"name": "train", "file": "train.py"}]},
        {"train.py": TRAIN},
    )
    return tmp_path


def run_dirs(base: Path) -> list[Path]:
    return sorted((base / ".orchest" / "runs").iterdir())


def test_a_sweep_runs_each_combination_in_its_own_workspace(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(project / "pipeline.yaml"), "--matrix", "alpha=0.1,0.2", "--matrix", "seed=1,2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 run(s)" in out and "4/4 run(s) succeeded" in out
    table = out[out.index("#  COMBINATION") :].splitlines()
    assert [line.split()[0:3] for line in table[1:5]] == [
        ["0", "alpha=0.1,", "seed=1"],
        ["1", "alpha=0.1,", "seed=2"],
        ["2", "alpha=0.2,", "seed=1"],
        ["3", "alpha=0.2,", "seed=2"],
    ]
    assert all("Succeeded" in line for line in table[1:5])
    seen = [json.loads((d / "workspace" / "seen.json").read_text()) for d in run_dirs(project)]
    assert [(s["alpha"], s["seed"]) for s in seen] == [(0.1, 1), (0.1, 2), (0.2, 1), (0.2, 2)]
    assert not (project / "seen.json").exists()
    assert all((d / "run.json").is_file() and (d / "train.log").is_file() for d in run_dirs(project))


def test_one_failed_run_makes_the_exit_code_one(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            str(project / "pipeline.yaml"),
            "--matrix",
            "alpha=0.1,0.2",
            "--matrix",
            "seed=2",
            "-p",
            "strict=true",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "1/2 run(s) succeeded" in out
    failed = [line for line in out.splitlines() if line.startswith("1  ")]
    assert failed and "Failed" in failed[0]


def test_max_parallel_runs_bounds_the_runs_at_once(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PipelineSpec.model_validate({"steps": [{"name": "train", "file": "train.py"}]})
    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}})
    runs = sweep.plan(spec, project, request, {"alpha": [0.1, 0.2, 0.3], "seed": [1]}, batch="b")
    assert [r.run.id for r in runs] == ["b-0", "b-1", "b-2"]
    at_once = {"now": 0, "peak": 0}
    real = {r.run.id: r.run.execute for r in runs}

    def counted(item: sweep.SweepRun):  # type: ignore[no-untyped-def]
        def execute():  # type: ignore[no-untyped-def]
            at_once["now"] += 1
            at_once["peak"] = max(at_once["peak"], at_once["now"])
            try:
                return real[item.run.id]()
            finally:
                at_once["now"] -= 1

        return execute

    for item in runs:
        monkeypatch.setattr(item.run, "execute", counted(item))
    assert sweep.execute(runs, 1)
    assert at_once["peak"] == 1 and all(r.phase is RunPhase.SUCCEEDED for r in runs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--matrix", "alpha"], "expected KEY=V1,V2"),
        (["--matrix", "alpha=1", "--matrix", "alpha=2"], "given twice"),
        (
            [
                "--matrix",
                "a=" + ",".join(map(str, range(20))),
                "--matrix",
                "b=" + ",".join(map(str, range(13))),
            ],
            "260 combinations",
        ),
        (["--matrix", "alpha=[1"], "not valid YAML"),
    ],
)
def test_bad_matrices_are_one_line_and_exit_two(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["run", str(project / "pipeline.yaml"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (project / ".orchest").exists()


def test_matrix_values_are_yaml() -> None:
    assert parse_matrix(["a=0.1,true,x,", "b=1"]) == {"a": [0.1, True, "x", ""], "b": [1]}
