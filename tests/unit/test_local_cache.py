"""Step caching in local runs: what reruns after an edit, a deleted output or a new parameter; ``orchest
plan`` and ``orchest cache prune``; bad input."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from orchest_operator.cli import main
from orchest_operator.local import LocalRun
from orchest_operator.models import PipelineDocument, PipelineRunSpec, PipelineRunStatus
from orchest_operator.pipelinefile import load
from tests.support.notebooks import write_pipeline

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, extra: str = "") -> str:
    """A step that writes out/<name>.txt from its parameters and what the step before it wrote."""
    reads = {"b": "a", "c": "b"}.get(name)
    upstream = f"open('out/{reads}.txt').read()" if reads else "''"
    return (
        "import os, pathlib\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        f"text = os.environ['ORCHEST_PARAMETERS'] + {upstream}\n"
        f"pathlib.Path('out/{name}.txt').write_text(str(len(text)) + {name!r})\n" + extra
    )


def chain(tmp_path: Path, **step_extra: dict[str, Any]) -> Path:
    """a → b → c, and d on its own; every step cached."""
    steps = [
        {"name": "a", "file": "a.py"},
        {"name": "b", "file": "b.py", "dependsOn": ["a"], "parameters": {"alpha": 1}},
        {"name": "c", "file": "c.py", "dependsOn": ["b"]},
        {"name": "d", "file": "d.py"},
    ]
    for step in steps:
        step.update(step_extra.get(step["name"], {}))
    files = {f"{s['name']}.py": script(str(s["name"])) for s in steps}
    return write_pipeline(tmp_path, {"cache": True, "parameters": {"seed": 1}, "steps": steps}, files)


LATEST: dict[Path, Path] = {}
"""Each pipeline's latest run directory: run ids sort by the second, two runs in one second do not."""


def run(pipeline: Path, *options: str, code: int = 0) -> dict[str, str]:
    runs = pipeline.parent / ".orchest" / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    assert main(["run", str(pipeline), *options]) == code
    (LATEST[pipeline],) = set(runs.glob("*")) - before
    return {name: step.phase.value for name, step in status_of(pipeline).steps.items()}


def status_of(pipeline: Path) -> PipelineRunStatus:
    return PipelineRunStatus.model_validate_json((LATEST[pipeline] / "run.json").read_text())


ALL_CACHED = {"a": "Cached", "b": "Cached", "c": "Cached", "d": "Cached"}


def test_an_unchanged_rerun_is_all_cached_and_names_the_run_it_reuses(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    assert set(run(pipeline).values()) == {"Succeeded"}
    first, first_id = status_of(pipeline), LATEST[pipeline].name
    assert run(pipeline) == ALL_CACHED
    second = status_of(pipeline)
    assert second.progress == "4/4" and second.phase.value == "Succeeded"
    assert {s.cached_from for s in second.steps.values()} == {first_id}
    assert first.steps["a"].cached_from is None


def test_an_edit_reruns_exactly_that_step_and_what_follows_it(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    run(pipeline)
    (tmp_path / "b.py").write_text(script("b", "print('edited')\n"))
    assert run(pipeline) == {"a": "Cached", "b": "Succeeded", "c": "Succeeded", "d": "Cached"}
    messages = {n: s.message for n, s in status_of(pipeline).steps.items()}
    assert messages["b"] == "b.py changed" and messages["c"] == "upstream b changed"
    assert run(pipeline) == ALL_CACHED


def test_a_deleted_output_reruns_its_step(tmp_path: Path) -> None:
    pipeline = chain(tmp_path, d={"outputs": ["out/d.txt"]})
    run(pipeline)
    (tmp_path / "out" / "d.txt").unlink()
    assert run(pipeline) == {"a": "Cached", "b": "Cached", "c": "Cached", "d": "Succeeded"}
    assert status_of(pipeline).steps["d"].message == "output out/d.txt missing"
    assert (tmp_path / "out" / "d.txt").is_file()


def test_a_changed_parameter_reruns_the_steps_that_get_it(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    run(pipeline)
    chain(tmp_path, b={"parameters": {"alpha": 2}})
    assert run(pipeline) == {"a": "Cached", "b": "Succeeded", "c": "Succeeded", "d": "Cached"}
    assert status_of(pipeline).steps["b"].message == "parameter alpha changed"
    # A run's -p reaches every step.
    assert set(run(pipeline, "-p", "seed=2").values()) == {"Succeeded"}


def test_an_upstream_that_writes_the_same_bytes_invalidates_nothing(tmp_path: Path) -> None:
    pipeline = chain(tmp_path, b={"outputs": ["out/b.txt"]})
    run(pipeline)
    (tmp_path / "b.py").write_text(script("b", "# only a comment\n"))
    assert run(pipeline) == {"a": "Cached", "b": "Succeeded", "c": "Cached", "d": "Cached"}


def test_no_cache_runs_everything_and_still_records(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    assert set(run(pipeline, "--no-cache").values()) == {"Succeeded"}
    assert status_of(pipeline).steps["a"].message == "caching is off for this run"
    assert run(pipeline) == ALL_CACHED


def test_steps_cache_only_when_asked(tmp_path: Path) -> None:
    pipeline = chain(tmp_path, d={"cache": False})
    run(pipeline)
    assert run(pipeline) == {"a": "Cached", "b": "Cached", "c": "Cached", "d": "Succeeded"}
    spec = PipelineDocument.model_validate(json.loads(json.dumps(load(pipeline).document.wire()))).spec
    spec.cache = False
    spec.steps[3].cache = None
    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "test"}})
    status = LocalRun(spec, tmp_path, request).execute()
    assert {n: s.phase.value for n, s in status.steps.items()} == {
        "a": "Succeeded",
        "b": "Succeeded",
        "c": "Succeeded",
        "d": "Succeeded",
    }


def test_a_failed_step_is_not_recorded(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    (tmp_path / "c.py").write_text("raise SystemExit(3)\n")
    assert run(pipeline, code=1)["c"] == "Failed"
    assert run(pipeline, code=1) == {"a": "Cached", "b": "Cached", "c": "Failed", "d": "Cached"}


def test_an_unreadable_index_runs_the_step_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = chain(tmp_path)
    run(pipeline)
    records = tmp_path / ".orchest" / "cache" / "records"
    shutil.move(records, tmp_path / "kept")
    records.write_text("not a directory")
    assert set(run(pipeline).values()) == {"Succeeded"}
    message = status_of(pipeline).steps["a"].message or ""
    assert message.startswith("cache not used: cannot read the cache index")
    assert records.read_text() == "not a directory"
    capsys.readouterr()
    assert main(["plan", str(pipeline)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot read the cache index .orchest/cache/records/" in err
    assert records.read_text() == "not a directory" and (tmp_path / "kept").is_dir()


def test_a_glob_leaving_the_pipeline_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = chain(tmp_path, a={"outputs": ["../elsewhere/*"]})
    assert main(["run", str(pipeline)]) == 2
    assert main(["plan", str(pipeline)]) == 2
    err = capsys.readouterr().err
    assert "spec.steps[0].outputs[0]" in err and "leaves the pipeline directory" in err
    assert not (tmp_path / ".orchest").exists()


def test_plan_says_run_or_cached_and_the_first_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = chain(tmp_path)
    assert main(["plan", str(pipeline)]) == 0
    assert "4 to run, 0 cached" in capsys.readouterr().out
    assert not (tmp_path / ".orchest").exists()  # planning runs nothing
    run(pipeline)
    (tmp_path / "b.py").write_text(script("b", "print('edited')\n"))
    capsys.readouterr()
    assert main(["plan", str(pipeline), "--output", "json"]) == 0
    rows = {r["step"]: r for r in json.loads(capsys.readouterr().out)["steps"]}
    assert {n: (r["action"], r["reason"]) for n, r in rows.items() if r["action"] == "run"} == {
        "b": ("run", "b.py changed"),
        "c": ("run", "upstream b will run"),
    }
    assert rows["a"]["cachedFrom"] == rows["d"]["cachedFrom"]
    assert main(["plan", str(pipeline), "--steps", "d", "-p", "seed=3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["d", "run", "parameter", "seed", "changed"]


def test_prune_trims_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = chain(tmp_path)
    run(pipeline)
    capsys.readouterr()
    assert main(["cache", "prune", str(pipeline)]) == 0
    assert "deleted 0 record(s), kept 8" in capsys.readouterr().out
    assert main(["cache", "prune", str(pipeline), "--keep-days", "0"]) == 0
    assert "deleted 8 record(s)" in capsys.readouterr().out
    assert set(run(pipeline).values()) == {"Succeeded"}
    assert main(["cache", "prune", str(pipeline), "--keep-days", "-1"]) == 2


def test_the_quickstart_rerun_is_all_cached_in_a_tenth_of_the_time(tmp_path: Path) -> None:
    # A ratio of two runs measured here, not a fixed time: the first runs two notebooks (seconds), the
    # second only hashes four files.
    # Without what `make run` leaves beside it: its cache and outputs would make the first run a rerun.
    shutil.copytree(
        ROOT / "examples" / "quickstart", tmp_path / "q", ignore=shutil.ignore_patterns(".orchest", "data")
    )
    loaded = load(tmp_path / "q" / "pipeline.yaml")
    assert loaded.document is not None
    request = PipelineRunSpec.model_validate({"pipelineRef": {"name": "quickstart"}})
    times, statuses = [], []
    for _ in range(2):
        began = time.perf_counter()
        statuses.append(LocalRun(loaded.document.spec, loaded.base, request).execute())
        times.append(time.perf_counter() - began)
    assert {s.phase.value for s in statuses[0].steps.values()} == {"Succeeded"}
    assert {s.phase.value for s in statuses[1].steps.values()} == {"Cached"}
    assert times[1] < times[0] / 10, times


def test_an_isolated_run_neither_reuses_nor_records(tmp_path: Path) -> None:
    pipeline = chain(tmp_path)
    run(pipeline)
    isolated = PipelineRunSpec.model_validate({"pipelineRef": {"name": "test"}, "workspace": "Isolated"})
    loaded = load(pipeline)
    assert loaded.document is not None
    status = LocalRun(loaded.document.spec, tmp_path, isolated).execute()
    assert {s.phase.value for s in status.steps.values()} == {"Succeeded"}
    assert {s.message for s in status.steps.values()} == {None}
