"""The step executor: parameters and environment, scripts, notebooks through papermill, and the termination
message a failed step leaves behind."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from orchest_operator.executor import (
    StepResult,
    _kernel_manager_class,
    environment_for,
    parse_termination_message,
    run_step,
    termination_message,
)
from orchest_operator.models import EnvVar, PipelineSpec, Step, StepFailure
from tests.support.notebooks import write_notebook


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Any]:
    with (tmp_path / "step.log").open("w") as stream:
        yield stream


def run(
    tmp_path: Path, file: str, log: Any, parameters: dict[str, Any] | None = None, **env: str
) -> StepResult:
    return run_step(
        file,
        workdir=tmp_path,
        step="s",
        run="r1",
        parameters=parameters or {},
        env=env,
        notebook_output=tmp_path / ".orchest" / "runs" / "r1" / "s.ipynb",
        log=log,
    )


def test_parameters_narrower_scopes_win() -> None:
    spec = PipelineSpec(
        parameters={"a": 1, "b": 1, "c": 1},
        steps=[Step(name="s", file="s.py", parameters={"b": 2, "c": 2}), Step(name="t", file="t.py")],
    )
    assert spec.parameters_for("s", {"c": 3}) == {"a": 1, "b": 2, "c": 3}
    assert spec.parameters_for("t") == {"a": 1, "b": 1, "c": 1}
    assert spec.parameters_for("t", {"d": [1]}) == {"a": 1, "b": 1, "c": 1, "d": [1]}


def test_environment_layers() -> None:
    spec = PipelineSpec(
        env=[EnvVar(name="A", value="pipeline"), EnvVar(name="B", value="pipeline")],
        steps=[
            Step(
                name="s",
                file="s.py",
                env=[EnvVar(name="B", value="step"), EnvVar(name="ORCHEST_STEP", value="hijack")],
            )
        ],
    )
    env = environment_for(spec, "s", run="r1", parameters={"x": 0.5})
    assert env == {
        "A": "pipeline",
        "B": "step",
        "ORCHEST_STEP": "s",
        "ORCHEST_RUN": "r1",
        "ORCHEST_PARAMETERS": '{"x": 0.5}',
    }


SCRIPT_ENV = (
    "import json, os\n"
    "keys = ['ORCHEST_PARAMETERS', 'ORCHEST_STEP', 'ORCHEST_RUN', 'CUSTOM']\n"
    "json.dump({k: os.environ.get(k) for k in keys}, open('env.json', 'w'))\n"
    "print('hello from python')\n"
)


def test_python_script_gets_parameters_and_env(tmp_path: Path, log: Any) -> None:
    (tmp_path / "s.py").write_text(SCRIPT_ENV)
    result = run(tmp_path, "s.py", log, {"alpha": 0.7, "on": True}, CUSTOM="yes")
    assert result == StepResult(True, "succeeded")
    assert json.loads((tmp_path / "env.json").read_text()) == {
        "ORCHEST_PARAMETERS": '{"alpha": 0.7, "on": true}',
        "ORCHEST_STEP": "s",
        "ORCHEST_RUN": "r1",
        "CUSTOM": "yes",
    }
    log.flush()
    assert "hello from python" in (tmp_path / "step.log").read_text()


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("s.py", "raise SystemExit(3)", "python exited with code 3"),
        ("s.py", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "python was killed by signal 9"),
        ("s.sh", "echo from bash; exit 4", "bash exited with code 4"),
        ("s.sh", 'test "$ORCHEST_STEP" = s && test "$ORCHEST_RUN" = r1', None),
    ],
)
def test_scripts(tmp_path: Path, log: Any, file: str, text: str, message: str | None) -> None:
    (tmp_path / file).write_text(text)
    result = run(tmp_path, file, log)
    assert result == (StepResult(True, "succeeded") if message is None else StepResult(False, message))


def test_missing_and_unsupported_files(tmp_path: Path, log: Any) -> None:
    assert run(tmp_path, "nope.py", log) == StepResult(
        False, f"step file 'nope.py' does not exist in {tmp_path}"
    )
    (tmp_path / "notes.txt").write_text("hi")
    assert run(tmp_path, "notes.txt", log) == StepResult(
        False, "cannot run 'notes.txt': a step file ends in .ipynb, .py or .sh"
    )


def test_invalid_notebook(tmp_path: Path, log: Any) -> None:
    (tmp_path / "s.ipynb").write_text("not json")
    result = run(tmp_path, "s.ipynb", log)
    assert not result.ok
    assert result.message.startswith("s.ipynb is not a valid notebook: ")


def test_notebook_runs_with_this_interpreter_and_gets_parameters(
    tmp_path: Path, log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A `python3` kernelspec that Jupyter finds first and that cannot start: the executor must not use it.
    bogus = tmp_path / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/nonexistent/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "broken",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    write_notebook(
        tmp_path / "s.ipynb",
        ("parameters", "alpha = 0.1"),
        "import json, os, sys\n"
        "keys = ['ORCHEST_PARAMETERS', 'ORCHEST_STEP', 'CUSTOM']\n"
        "out = {k: os.environ.get(k) for k in keys}\n"
        "out.update(alpha=alpha, python=sys.executable, cwd=os.getcwd())\n"
        "json.dump(out, open('out.json', 'w'))\n"
        "print('printed by the notebook')",
    )
    result = run(tmp_path, "s.ipynb", log, {"alpha": 0.5, "bad-key": 1}, CUSTOM="yes")
    assert result == StepResult(True, "succeeded")
    out = json.loads((tmp_path / "out.json").read_text())
    assert out == {
        "ORCHEST_PARAMETERS": '{"alpha": 0.5, "bad-key": 1}',
        "ORCHEST_STEP": "s",
        "CUSTOM": "yes",
        "alpha": 0.5,
        "python": sys.executable,
        "cwd": str(tmp_path),
    }
    assert "CUSTOM" not in os.environ
    log.flush()
    text = (tmp_path / "step.log").read_text()
    assert "printed by the notebook" in text
    assert "not injecting parameters that are not identifiers: bad-key" in text
    executed = nbformat.read(tmp_path / ".orchest" / "runs" / "r1" / "s.ipynb", as_version=4)
    assert [c.metadata.get("tags", []) for c in executed.cells] == [
        ["parameters"],
        ["injected-parameters"],
        [],
    ]


def test_notebook_failure_names_the_users_cell(tmp_path: Path, log: Any) -> None:
    write_notebook(
        tmp_path / "s.ipynb",
        ("markdown", "# Title"),
        ("parameters", "x = 1"),
        "y = x + 1",
        "raise ValueError(f'bad {y}')",
        "print('never')",
        kernel=None,  # no kernelspec in the metadata: python3
    )
    result = run(tmp_path, "s.ipynb", log, {"x": 41})
    failure = StepFailure(cell=3, ename="ValueError", evalue="bad 42")
    assert result == StepResult(False, "cell 3 raised ValueError: bad 42", failure)
    assert (tmp_path / ".orchest" / "runs" / "r1" / "s.ipynb").exists()


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("s.sh", "printf 'no newline'", "no newline\n"),
        ("s.sh", "echo line", "line\n"),
        ("s.sh", "", ""),
        ("s.py", "import sys; print('a'); sys.stdout.write('é}')", "a\né}\n"),
    ],
)
def test_step_output_ends_its_line(tmp_path: Path, log: Any, file: str, text: str, expected: str) -> None:
    """What orchest writes after a step (``orchest: step s succeeded``) starts on a line of its own."""
    (tmp_path / file).write_text(text)
    assert run(tmp_path, file, log).ok
    log.flush()
    assert (tmp_path / "step.log").read_text(encoding="utf-8") == expected


def test_notebook_output_ends_its_line_and_the_kernel_uses_unix_sockets(tmp_path: Path, log: Any) -> None:
    write_notebook(tmp_path / "s.ipynb", "print('partial', end='')")
    assert run(tmp_path, "s.ipynb", log).ok
    log.flush()
    text = (tmp_path / "step.log").read_text()
    assert text.endswith("partial\n")
    manager = _kernel_manager_class()()
    assert manager.transport == "ipc"
    assert Path(manager.ip).parent == Path(tempfile.gettempdir())
    assert not list(Path(tempfile.gettempdir()).glob(Path(manager.ip).name + "*"))


def test_a_background_process_does_not_hold_the_step(tmp_path: Path, log: Any) -> None:
    """The script exits while a child it started still holds its output: the step ends with the script."""
    (tmp_path / "s.sh").write_text("sleep 300 &\necho $! > pid\necho started\n")
    try:
        assert run(tmp_path, "s.sh", log).ok  # pytest-timeout fails this test if the step waits
    finally:
        os.kill(int((tmp_path / "pid").read_text()), 9)
    log.flush()
    assert (tmp_path / "step.log").read_text() == "started\n"


def test_unknown_kernel(tmp_path: Path, log: Any) -> None:
    write_notebook(tmp_path / "s.ipynb", "1", kernel="no-such-kernel")
    result = run(tmp_path, "s.ipynb", log)
    assert not result.ok
    assert result.failure is not None
    assert result.failure.ename == "NoSuchKernel"
    assert result.message == "notebook raised NoSuchKernel: No such kernel named no-such-kernel"


def test_termination_message_round_trip() -> None:
    failure = StepFailure(cell=2, ename="KeyError", evalue="'x'")
    text = termination_message(StepResult(False, "cell 2 raised KeyError: 'x'", failure))
    assert json.loads(text) == {
        "message": "cell 2 raised KeyError: 'x'",
        "cell": 2,
        "ename": "KeyError",
        "evalue": "'x'",
    }
    assert parse_termination_message(text) == (failure, "cell 2 raised KeyError: 'x'")
    script = termination_message(StepResult(False, "bash exited with code 4"))
    assert json.loads(script) == {"message": "bash exited with code 4"}
    assert parse_termination_message(script) == (None, "bash exited with code 4")


@pytest.mark.parametrize("limit", [4096, 300])
def test_termination_message_fits_the_limit(limit: int) -> None:
    evalue = 'é"\n\\' * 5000
    failure = StepFailure(cell=7, ename="RuntimeError", evalue=evalue)
    text = termination_message(StepResult(False, "m" * 5000, failure), limit=limit)
    assert len(text.encode()) <= limit
    data = json.loads(text)
    assert (data["cell"], data["ename"]) == (7, "RuntimeError")
    assert data["evalue"].endswith("…")
    assert evalue.startswith(data["evalue"][:-1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Traceback (most recent call last): boom\n", (None, "Traceback (most recent call last): boom")),
        ("[1, 2]", (None, "[1, 2]")),
        ('{"cell": "x"}', (None, '{"cell": "x"}')),
        ("{}", (None, "")),
    ],
)
def test_parse_termination_message_tolerates_other_text(text: str, expected: tuple[Any, str]) -> None:
    assert parse_termination_message(text) == expected
