"""``orchest run``: real runs of tiny pipelines (papermill for notebooks), their exit codes, and the
``run.json`` they leave behind in the shape of ``PipelineRun.status``."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchest_operator.cli import main
from orchest_operator.local import new_run_id
from orchest_operator.models import DNS1123_LABEL, PipelineRunStatus, RunPhase, StepPhase
from orchest_operator.progress import LiveReporter, PlainReporter, reporter_for, summary
from tests.support.notebooks import write_notebook, write_pipeline

DUMP_PARAMETERS = (
    "import json, os\n"
    "parameters = json.loads(os.environ['ORCHEST_PARAMETERS'])\n"
    "json.dump(parameters, open(os.environ['ORCHEST_STEP'] + '.json', 'w'))\n"
)


def only_run(directory: Path) -> tuple[Path, PipelineRunStatus]:
    runs = list((directory / ".orchest" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], PipelineRunStatus.model_validate_json((runs[0] / "run.json").read_text())


def phases(status: PipelineRunStatus) -> dict[str, str]:
    return {name: step.phase.value for name, step in status.steps.items()}


def test_notebooks_parameters_and_a_failing_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_notebook(
        tmp_path / "good.ipynb",
        ("parameters", "alpha = 0.0\nflag = None\nname = ''\ntag = None"),
        "import json\n"
        "json.dump({'alpha': alpha, 'flag': flag, 'name': name, 'tag': tag}, open('good.json', 'w'))",
    )
    write_notebook(
        tmp_path / "bad.ipynb",
        ("markdown", "# Bad"),
        ("parameters", "x = 1"),
        "y = 2",
        "raise RuntimeError('broken')",
    )
    pipeline = write_pipeline(
        tmp_path,
        {
            "parameters": {"alpha": 0.2, "name": "pipe", "flag": False},
            "steps": [
                {"name": "good", "file": "good.ipynb", "parameters": {"alpha": 0.3, "flag": False}},
                {"name": "bad", "file": "bad.ipynb"},
                {"name": "after-good", "file": "after.py", "dependsOn": ["good"]},
                {"name": "after-bad", "file": "after.py", "dependsOn": ["bad"]},
            ],
        },
        {"after.py": DUMP_PARAMETERS},
    )
    code = main(
        [
            "run",
            str(pipeline),
            "--failure-policy",
            "continue",
            "-p",
            "alpha=0.7",
            "-p",
            "flag=true",
            "-p",
            "tag=hello",
        ]
    )
    assert code == 1
    run_dir, status = only_run(tmp_path)
    expected = {"good": "Succeeded", "bad": "Failed", "after-good": "Succeeded", "after-bad": "Skipped"}
    assert phases(status) == expected
    # Run overrides beat step parameters, which beat pipeline parameters; -p values are YAML scalars.
    merged = {"alpha": 0.7, "flag": True, "name": "pipe", "tag": "hello"}
    assert json.loads((tmp_path / "good.json").read_text()) == merged
    assert json.loads((tmp_path / "after-good.json").read_text()) == merged
    bad = status.steps["bad"]
    assert bad.failure is not None
    assert (bad.failure.cell, bad.failure.ename, bad.failure.evalue) == (3, "RuntimeError", "broken")
    assert bad.message == "cell 3 raised RuntimeError: broken"
    assert status.steps["after-bad"].message == "upstream step 'bad' did not succeed"
    assert status.phase is RunPhase.FAILED
    assert status.progress == "2/4"
    condition = status.conditions[0]
    assert (condition.type, condition.status.value, condition.reason) == ("Succeeded", "False", "Failed")
    assert condition.message == "step(s) failed: bad"
    for name in ("good", "bad"):
        assert (run_dir / f"{name}.ipynb").exists()
    for name in status.steps:
        if status.steps[name].phase is not StepPhase.SKIPPED:
            assert (run_dir / f"{name}.log").exists()
    out = capsys.readouterr().out
    assert f"Executed notebooks and logs: {run_dir}{os.sep}" in out
    assert f"  bad failed: cell 3 raised RuntimeError: broken (log: {run_dir / 'bad.log'})" in out


def test_a_successful_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {
            "env": [{"name": "WHO", "value": "pipeline"}, {"name": "WHERE", "value": "pipeline"}],
            "parameters": {"n": 1},
            "steps": [
                {"name": "first", "file": "first.py", "env": [{"name": "WHERE", "value": "step"}]},
                {"name": "second", "file": "second.sh", "dependsOn": ["first"]},
            ],
        },
        {
            "first.py": "import os, pathlib\n"
            "seen = ' '.join(os.environ[k] for k in ('WHO', 'WHERE', 'ORCHEST_RUN'))\n"
            "pathlib.Path('first.txt').write_text(seen)\n",
            "second.sh": 'test -f first.txt && echo "$ORCHEST_STEP $ORCHEST_PARAMETERS" > second.txt\n',
        },
    )
    assert main(["run", str(pipeline)]) == 0
    run_dir, status = only_run(tmp_path)
    assert (tmp_path / "first.txt").read_text() == f"pipeline step {run_dir.name}"
    assert (tmp_path / "second.txt").read_text() == 'second {"n": 1}\n'
    assert status.phase is RunPhase.SUCCEEDED
    assert (status.conditions[0].status.value, status.conditions[0].reason) == ("True", "Succeeded")
    assert status.progress == "2/2"
    assert status.snapshot is not None
    assert status.snapshot.selected == ["first", "second"]
    assert [s.name for s in status.snapshot.pipeline.steps] == ["first", "second"]
    assert all(s.attempts == 1 and s.start_time and s.completion_time for s in status.steps.values())
    assert status.start_time and status.completion_time
    assert re.fullmatch(DNS1123_LABEL, run_dir.name)
    out = capsys.readouterr().out
    assert out.startswith(f"Run {run_dir.name}: 2 step(s) of test (at most ")
    assert f"Run {run_dir.name} Succeeded: 2/2 steps succeeded in " in out


BARRIER = (
    "import os, pathlib, sys, time\n"
    "me, other = sys.argv[0].split('/')[-1][0], 'b' if sys.argv[0].split('/')[-1][0] == 'a' else 'a'\n"
    "pathlib.Path(me + '.started').touch()\n"
    "deadline = time.monotonic() + 30\n"
    "while not pathlib.Path(other + '.started').exists():\n"
    "    if time.monotonic() > deadline: raise SystemExit('the other step never ran alongside')\n"
    "    time.sleep(0.02)\n"
)
EXCLUSIVE = (
    "import os, time\n"
    "fd = os.open('busy', os.O_CREAT | os.O_EXCL)\n"
    "time.sleep(0.1)\n"
    "os.close(fd); os.remove('busy')\n"
)


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {"steps": [{"name": "a", "file": "a.py"}, {"name": "b", "file": "b.py"}]},
        {"a.py": BARRIER, "b.py": BARRIER},
    )
    assert main(["run", str(pipeline), "--parallelism", "2"]) == 0


def test_parallelism_one_runs_one_step_at_a_time(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {"steps": [{"name": n, "file": "x.py"} for n in ("a", "b", "c")]},
        {"x.py": EXCLUSIVE},
    )
    assert main(["run", str(pipeline), "--parallelism", "1"]) == 0
    _, status = only_run(tmp_path)
    starts = [status.steps[n].start_time for n in ("a", "b", "c")]
    assert starts == sorted(starts)


WAIT_FOR_A = (
    "import pathlib, time\nwhile not pathlib.Path('a.done').exists(): time.sleep(0.02)\ntime.sleep(1)\n"
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("fail-fast", {"a": "Failed", "b": "Succeeded", "c": "Skipped", "d": "Skipped"}),
        ("continue", {"a": "Failed", "b": "Succeeded", "c": "Skipped", "d": "Succeeded"}),
    ],
)
def test_failure_policies(tmp_path: Path, policy: str, expected: dict[str, str]) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {
            "steps": [
                {"name": "a", "file": "a.py"},
                {"name": "b", "file": "b.py"},
                {"name": "c", "file": "ok.py", "dependsOn": ["a"]},
                {"name": "d", "file": "ok.py"},
            ]
        },
        {"a.py": "open('a.done', 'w')\nraise SystemExit(3)", "b.py": WAIT_FOR_A, "ok.py": ""},
    )
    assert main(["run", str(pipeline), "--parallelism", "2", "--failure-policy", policy]) == 1
    _, status = only_run(tmp_path)
    assert phases(status) == expected
    assert status.steps["a"].message == "python exited with code 3"
    assert status.steps["a"].failure is None
    assert status.steps["c"].message == "upstream step 'a' did not succeed"
    if policy == "fail-fast":
        assert status.steps["d"].message == "not started: a step failed and the failure policy is FailFast"


def test_retries_and_step_timeout(tmp_path: Path) -> None:
    flaky = (
        "import pathlib\n"
        "p = pathlib.Path('tries'); n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n))\n"
        "raise SystemExit(0 if n >= 2 else 1)\n"
    )
    pipeline = write_pipeline(
        tmp_path,
        {
            "steps": [
                {"name": "flaky", "file": "flaky.py", "retries": 2},
                {"name": "slow", "file": "slow.sh", "timeoutSeconds": 1, "retries": 3},
            ]
        },
        {"flaky.py": flaky, "slow.sh": "sleep 30"},
    )
    assert main(["run", str(pipeline), "--failure-policy", "continue"]) == 1
    run_dir, status = only_run(tmp_path)
    assert (status.steps["flaky"].phase, status.steps["flaky"].attempts) == (StepPhase.SUCCEEDED, 2)
    assert "orchest: attempt 2 of 3" in (run_dir / "flaky.log").read_text()
    slow = status.steps["slow"]
    # The timeout covers every attempt, as a Job's activeDeadlineSeconds does.
    assert (slow.phase, slow.message, slow.attempts) == (StepPhase.FAILED, "timed out after 1s", 1)


def test_a_partial_run(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {
            "steps": [
                {"name": "a", "file": "x.py"},
                {"name": "b", "file": "x.py", "dependsOn": ["a"]},
                {"name": "c", "file": "x.py", "dependsOn": ["b"]},
                {"name": "z", "file": "x.py"},
            ]
        },
        {"x.py": DUMP_PARAMETERS},
    )
    assert main(["run", str(pipeline), "--steps", "b", "--mode", "incoming"]) == 0
    _, status = only_run(tmp_path)
    assert phases(status) == {"a": "Succeeded", "b": "Succeeded"}
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("args", "files", "expected"),
    [
        ([], {}, ["{p}: spec.steps[0].file: 'x.py' does not exist in {d}"]),
        (["-p", "novalue"], {"x.py": ""}, ["orchest: -p 'novalue': expected KEY=VALUE"]),
        (["-p", "=1"], {"x.py": ""}, ["orchest: -p '=1': expected KEY=VALUE"]),
        (
            ["-p", "x=[1"],
            {"x.py": ""},
            ["orchest: -p 'x=[1': the value is not valid YAML (expected ',' or ']', but got '<stream end>')"],
        ),
        (["--steps", "zz"], {"x.py": ""}, ["{p}: selected step 'zz' does not exist"]),
        (["--mode", "selected"], {"x.py": ""}, ["{p}: selection mode Selected needs at least one step"]),
        (
            ["--mode", "all", "--steps", "a"],
            {"x.py": ""},
            ["orchest: --steps selects steps; it cannot be combined with --mode all"],
        ),
        (
            ["--steps", "Bad_Name"],
            {"x.py": ""},
            [
                "{p}: selection.steps[0]: 'Bad_Name' is not a DNS-1123 label (lowercase letters, digits and "
                "'-', starting and ending with a letter or digit)"
            ],
        ),
    ],
)
def test_invalid_input_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    files: dict[str, str],
    expected: list[str],
) -> None:
    pipeline = write_pipeline(tmp_path, {"steps": [{"name": "a", "file": "x.py"}]}, files)
    assert main(["run", str(pipeline), *args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [line.format(p=pipeline, d=tmp_path) for line in expected]
    assert not (tmp_path / ".orchest").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "p.yaml", "--parallelism", "-1"])
    assert caught.value.code == 2
    assert "argument --parallelism: must be 0 (no limit) or more" in capsys.readouterr().err


def test_ctrl_c_cancels_running_steps(tmp_path: Path) -> None:
    pipeline = write_pipeline(
        tmp_path,
        {
            "steps": [
                {"name": "slow", "file": "slow.py"},
                {"name": "later", "file": "slow.py", "dependsOn": ["slow"]},
            ]
        },
        {"slow.py": "import os, time\nopen('slow.pid', 'w').write(str(os.getpid()))\ntime.sleep(60)\n"},
    )
    entry = "import sys; from orchest_operator.cli import main; sys.exit(main())"
    process = subprocess.Popen(
        [sys.executable, "-c", entry, "run", str(pipeline)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = tmp_path / "slow.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    _, status = only_run(tmp_path)
    assert status.phase is RunPhase.CANCELLED
    assert phases(status) == {"slow": "Cancelled", "later": "Cancelled"}
    assert status.conditions[0].reason == "Cancelled"
    assert "Cancelled: 0/2 steps succeeded" in out
    step_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(step_pid):
        assert time.monotonic() < deadline, "the step's process outlived the run"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_run_ids_sort_by_time_and_are_names() -> None:
    early = new_run_id(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = new_run_id(datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert re.fullmatch(r"20240102-030405-[0-9a-f]{4}", early)
    assert early < late
    assert re.fullmatch(DNS1123_LABEL, early)


def _status(**steps: dict[str, Any]) -> PipelineRunStatus:
    return PipelineRunStatus.model_validate({"phase": "Running", "progress": "0/2", "steps": steps})


def test_reporters() -> None:
    assert isinstance(reporter_for(io.StringIO()), PlainReporter)
    stream = io.StringIO()
    plain = PlainReporter(stream)
    start = "2024-01-01T00:00:00Z"
    plain.update(_status(a={"phase": "Running", "startTime": start}, b={}))
    plain.update(_status(a={"phase": "Running", "startTime": start}, b={}))
    failed = {"phase": "Failed", "startTime": start, "completionTime": "2024-01-01T00:00:02.5Z"}
    plain.close(
        _status(
            a={**failed, "message": "boom"},
            b={"phase": "Skipped", "message": "upstream step 'a' did not succeed"},
        )
    )
    lines = [line[10:] for line in stream.getvalue().splitlines()]  # without the clock
    assert lines == [
        "a  Running",
        "a  Failed     2.5s  boom",
        "b  Skipped    upstream step 'a' did not succeed",
    ]

    screen = io.StringIO()
    live = LiveReporter(Console(file=screen, force_terminal=True, width=100))
    live.update(_status(a={"phase": "Running", "startTime": start}, b={}))
    live.close(_status(a={"phase": "Succeeded"}, b={"phase": "Succeeded"}))
    assert "Succeeded" in screen.getvalue()


def test_summary_lines(tmp_path: Path) -> None:
    status = PipelineRunStatus.model_validate(
        {
            "phase": "Failed",
            "progress": "1/2",
            "startTime": "2024-01-01T00:00:00Z",
            "completionTime": "2024-01-01T00:00:03Z",
            "steps": {
                "a": {"phase": "Succeeded"},
                "b": {"phase": "Failed", "message": "bash exited with code 1"},
            },
        }
    )
    assert summary(status, "r1", tmp_path / "r1") == [
        "Run r1 Failed: 1/2 steps succeeded in 3.0s",
        f"Executed notebooks and logs: {tmp_path / 'r1'}{os.sep}",
        f"Run record: {tmp_path / 'r1' / 'run.json'}",
        f"  b failed: bash exited with code 1 (log: {tmp_path / 'r1' / 'b.log'})",
    ]
