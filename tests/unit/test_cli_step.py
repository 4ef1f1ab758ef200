"""``orchest step``, the entrypoint of a step's container: exit code, executed notebook and the
termination message Kubernetes hands to the operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchest_operator.cli import build_parser
from orchest_operator.cli.step import handle
from tests.support.notebooks import write_notebook

# `orchest step` as the console script runs it (what a Job's container runs), and the lighter module entry
# point the local runner starts.
ENTRY = "import sys; from orchest_operator.cli import main; sys.exit(main())"
ORCHEST = [sys.executable, "-c", ENTRY, "step"]
MODULE = [sys.executable, "-m", "orchest_operator.cli.step"]


def step(
    workdir: Path,
    *args: str,
    parameters: str | None = None,
    env: dict[str, str] | None = None,
    command: list[str] = MODULE,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    termination = workdir / "termination-log"
    variables = {**os.environ, "ORCHEST_TERMINATION_LOG": str(termination), **(env or {})}
    if parameters is not None:
        variables["ORCHEST_PARAMETERS"] = parameters
    done = subprocess.run(
        [*command, *args], cwd=workdir, env=variables, capture_output=True, text=True, timeout=60
    )
    return done, termination


def test_a_script_that_succeeds_leaves_no_termination_message(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("import os; print('params', os.environ['ORCHEST_PARAMETERS'])")
    done, termination = step(
        tmp_path, "--file", "s.py", "--step", "s", "--run", "r1", parameters='{"a": 1}', command=ORCHEST
    )
    assert done.returncode == 0, done.stderr
    assert 'params {"a": 1}' in done.stdout
    assert "orchest: step s succeeded" in done.stdout
    assert not termination.exists()


def test_step_and_run_come_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "s.sh").write_text('echo "$ORCHEST_STEP/$ORCHEST_RUN"; exit 5')
    env = {"ORCHEST_STEP": "job-step", "ORCHEST_RUN": "run-7"}
    done, termination = step(tmp_path, "--file", "s.sh", env=env, command=ORCHEST)
    assert done.returncode == 1
    assert "job-step/run-7" in done.stdout
    assert json.loads(termination.read_text()) == {"message": "bash exited with code 5"}
    assert done.stderr.endswith("orchest: step failed: bash exited with code 5\n")


def test_a_failing_notebook_reports_its_cell(tmp_path: Path) -> None:
    write_notebook(
        tmp_path / "train.ipynb",
        ("markdown", "# Train"),
        ("parameters", "rate = 0.1"),
        "raise ValueError('rate ' + str(rate) + ' ' + 'é' * 5000)",
    )
    args = ["--file", "train.ipynb", "--step", "train", "--run", "r1", "--output-dir", "out"]
    done, termination = step(tmp_path, *args, parameters='{"rate": 0.5}')
    assert done.returncode == 1
    data = json.loads(termination.read_text())
    assert len(termination.read_bytes()) <= 4096
    assert (data["cell"], data["ename"]) == (2, "ValueError")
    assert data["evalue"].startswith("rate 0.5 éé")
    assert data["message"].startswith("cell 2 raised ValueError: rate 0.5 éé")
    assert (tmp_path / "out" / "train.ipynb").exists()


@pytest.mark.parametrize(
    ("args", "parameters", "message"),
    [
        (["--step", "s", "--run", "r"], "{not json", "$ORCHEST_PARAMETERS is not valid JSON: "),
        (["--step", "s", "--run", "r"], "[1, 2]", "$ORCHEST_PARAMETERS must be a JSON object"),
        (["--run", "r"], None, "--step is required (or set $ORCHEST_STEP and $ORCHEST_RUN)"),
        (["--step", "s"], None, "--run is required (or set $ORCHEST_STEP and $ORCHEST_RUN)"),
        (["--step", "s", "--run", "r", "--file", "gone.py"], None, "step file 'gone.py' does not exist in "),
    ],
)
def test_bad_input_is_a_failed_step(
    tmp_path: Path, args: list[str], parameters: str | None, message: str
) -> None:
    (tmp_path / "s.py").write_text("pass")
    env = {"ORCHEST_STEP": "", "ORCHEST_RUN": ""}
    done, termination = step(tmp_path, "--file", "s.py", *args, parameters=parameters, env=env)
    assert done.returncode == 1
    assert json.loads(termination.read_text())["message"].startswith(message)
    assert f"orchest: step failed: {message}" in done.stderr


def test_an_unwritable_termination_log_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("raise SystemExit(2)")
    done, _ = step(
        tmp_path,
        "--file",
        "s.py",
        "--step",
        "s",
        "--run",
        "r",
        env={"ORCHEST_TERMINATION_LOG": str(tmp_path / "missing" / "log")},
    )
    assert done.returncode == 1
    assert f"orchest: cannot write the termination log {tmp_path / 'missing' / 'log'}: " in done.stderr


def test_the_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["step", "--file", "a.py", "--step", "a", "--run", "r"])
    assert args.handler is handle
    assert (args.file, args.step, args.run, args.output_dir) == ("a.py", "a", "r", None)


def test_a_step_handed_its_cache_runs_once_then_exits_at_once_with_a_hit(tmp_path: Path) -> None:
    from orchest_operator.cache.handoff import handoff
    from orchest_operator.models import PipelineSpec

    spec = PipelineSpec.model_validate(
        {"cache": True, "steps": [{"name": "s", "file": "s.py", "outputs": ["out.txt"]}]}
    )
    (tmp_path / "s.py").write_text("import pathlib; pathlib.Path('out.txt').write_text('x'); print('ran')")
    cache = handoff(spec, "s", pipeline="p", default_image="runner:1")
    assert cache is not None
    env = {"ORCHEST_CACHE": cache.wire()}
    first, termination = step(tmp_path, "--file", "s.py", "--step", "s", "--run", "r1", env=env)
    assert first.returncode == 0 and "ran" in first.stdout
    assert "orchest: cache: runs: no earlier execution" in first.stdout and not termination.exists()
    second, termination = step(tmp_path, "--file", "s.py", "--step", "s", "--run", "r2", env=env)
    assert second.returncode == 0 and "ran" not in second.stdout
    assert json.loads(termination.read_text()) == {"message": "same inputs as in run r1", "cachedFrom": "r1"}
    termination.unlink()
    (tmp_path / "out.txt").write_text("changed")
    third, termination = step(tmp_path, "--file", "s.py", "--step", "s", "--run", "r3", env=env)
    assert "ran" in third.stdout and "output out.txt changed" in third.stdout and not termination.exists()


def test_a_garbled_cache_handoff_runs_the_step(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("print('ran')")
    done, _ = step(tmp_path, "--file", "s.py", "--step", "s", "--run", "r1", env={"ORCHEST_CACHE": "{"})
    assert done.returncode == 0 and "ran" in done.stdout
    assert "cache not used" in done.stderr
