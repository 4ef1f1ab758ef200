"""Isolated workspaces: the copy (what it leaves out, links, a second try), and local runs in one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchest_operator.local import LocalRun
from orchest_operator.models import PipelineRunSpec, PipelineSpec, RunPhase, StepPhase
from orchest_operator.workspace import copy, excluded, main, workspace_of


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    base = tmp_path / "project"
    (base / "data" / "raw").mkdir(parents=True)
    (base / "data" / "raw" / "big.csv").write_text("1,2\n" * 100)
    (base / "models").mkdir()
    (base / "models" / "m.pkl").write_bytes(b"x")
    (base / "train.py").write_text("print('hi')\n")
    (base / "notes.tmp").write_text("scratch")
    (base / ".orchest" / "runs" / "old").mkdir(parents=True)
    (base / ".orchest" / "runs" / "old" / "run.json").write_text("{}")
    os.symlink("train.py", base / "link.py")
    return base


def test_the_copy_leaves_out_orchest_and_the_excluded_globs(project: Path) -> None:
    target = Path(workspace_of(project, "r1"))
    done = copy(project, target, ["data/*", "*.tmp"])
    assert tree(target) == ["data", "link.py", "models", "models/m.pkl", "train.py"]
    assert os.readlink(target / "link.py") == "train.py"
    assert (done.files, done.bytes) == (2, 13)
    assert target.is_relative_to(project / ".orchest" / "runs" / "r1")


def test_a_partial_copy_is_made_again(project: Path) -> None:
    target = Path(workspace_of(project, "r1"))
    target.mkdir(parents=True)
    (target / "half-written.py").write_text("")
    copy(project, target)
    assert "half-written.py" not in tree(target) and "data/raw/big.csv" in tree(target)


@pytest.mark.parametrize(
    ("path", "globs", "out"),
    [
        (".orchest", [], True),
        ("data", ["data"], True),
        ("data", ["data/"], True),
        ("data/raw/big.csv", ["data/*"], True),
        ("data/raw/big.csv", ["*.csv"], True),
        ("train.py", ["data/*", "*.csv"], False),
    ],
)
def test_excluded(path: str, globs: list[str], out: bool) -> None:
    assert excluded(path, globs) is out


def test_the_job_entrypoint(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(project), "r2", "--exclude", "data"]) == 0
    assert "copied 3 file(s)" in capsys.readouterr().out
    assert main([str(project / "missing"), "r3"]) == 1
    assert "cannot copy" in capsys.readouterr().err


WRITE = "import os\nopen('out.txt', 'a').write(os.environ['ORCHEST_RUN'] + '\\n')\n"


def test_isolated_local_runs_work_in_their_own_copy(tmp_path: Path) -> None:
    (tmp_path / "write.py").write_text(WRITE)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"0" * 10)
    spec = PipelineSpec.model_validate({"steps": [{"name": "w", "file": "write.py"}]})
    request = PipelineRunSpec.model_validate(
        {"pipelineRef": {"name": "p"}, "workspace": "Isolated", "workspaceExclude": ["data"]}
    )
    runs = [LocalRun(spec, tmp_path, request, run_id=f"iso-{i}") for i in range(2)]
    for run in runs:
        assert run.execute().phase is RunPhase.SUCCEEDED
    assert not (tmp_path / "out.txt").exists(), "the pipeline's own directory is untouched"
    for run in runs:
        assert (run.workdir / "out.txt").read_text() == f"{run.id}\n"
        assert not (run.workdir / "data").exists()
        assert (run.dir / "run.json").is_file() and (run.dir / "w.log").is_file()


def test_a_workspace_that_cannot_be_made_fails_the_run_before_any_step(tmp_path: Path) -> None:
    (tmp_path / "write.py").write_text(WRITE)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("x")
    (tmp_path / "secret" / "key").chmod(0)
    spec = PipelineSpec.model_validate({"steps": [{"name": "w", "file": "write.py"}]})
    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}, "workspace": "Isolated"})
    run = LocalRun(spec, tmp_path, request, run_id="iso-bad")
    if os.access(tmp_path / "secret" / "key", os.R_OK):
        pytest.skip("running as root: every file is readable")
    status = run.execute()
    assert status.phase is RunPhase.FAILED and status.conditions[0].reason == "WorkspaceFailed"
    assert status.steps["w"].phase is StepPhase.SKIPPED


def test_the_job_entrypoint_can_start_from_an_earlier_runs_workspace(project: Path) -> None:
    assert main([str(project), "r1", "--exclude", "data"]) == 0
    (Path(workspace_of(project, "r1")) / "output.csv").write_text("made by r1")
    assert main([str(project), "r2", "--from-run", "r1"]) == 0
    assert (Path(workspace_of(project, "r2")) / "output.csv").read_text() == "made by r1"
