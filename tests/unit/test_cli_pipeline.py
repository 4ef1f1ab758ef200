"""``orchest validate``, ``graph`` and ``convert``: every bad input gets its own readable line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchest_operator.cli import main
from orchest_operator.convert import dns_label, unique
from orchest_operator.models import PipelineDocument
from tests.support.notebooks import write_notebook, write_pipeline

ROOT = Path(__file__).resolve().parents[2]
LABEL = (
    "is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
)
DIAMOND = {
    "steps": [
        {"name": "load", "file": "load.ipynb"},
        {"name": "left", "file": "left.py", "dependsOn": ["load"]},
        {"name": "right", "file": "right.sh", "dependsOn": ["load"]},
        {"name": "end", "file": "end.py", "dependsOn": ["left", "right"]},
    ]
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- validate ----------------------------------------------------------------------------------------


def test_validate_a_valid_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_notebook(tmp_path / "load.ipynb", "1")
    files = {"left.py": "", "right.sh": "", "end.py": ""}
    pipeline = write_pipeline(tmp_path, DIAMOND, files)
    assert run(capsys, "validate", str(pipeline)) == (
        0,
        f"{pipeline}: valid pipeline 'test' with 4 step(s)\n",
        "",
    )


def test_the_quickstart_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(ROOT / "examples" / "quickstart" / "pipeline.yaml"))
    assert code == 0
    assert out.endswith("valid pipeline 'quickstart' with 4 step(s)\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "metadata: {name: x}\nspec:\n  steps: [\n",
            [
                "line 4, column 1: invalid YAML: expected the node content, but found '<stream end>' "
                "(while parsing a flow node)"
            ],
        ),
        (
            "metadata: {name: x}\nspec: {}\nspec: {}\n",
            ["line 3, column 1: invalid YAML: duplicate key 'spec'"],
        ),
        ("", ["the file is empty; expected a Pipeline with metadata and spec"]),
        ("- a\n- b\n", ["expected a Pipeline (a mapping with metadata and spec), found a list"]),
        ("just text\n", ["expected a Pipeline (a mapping with metadata and spec), found a string"]),
        ("metadata: {name: x}\n", ["spec: is required"]),
        (
            "kind: Job\nmetadata: {name: x}\nspec: {steps: []}\n",
            [
                "kind: 'Job' should be 'Pipeline'",
                "spec.steps: List should have at least 1 item after validation, not 0",
            ],
        ),
    ],
    ids=["yaml-syntax", "duplicate-key", "empty", "list", "scalar", "no-spec", "kind-and-empty-steps"],
)
def test_validate_reports_document_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(text)
    code, out, err = run(capsys, "validate", str(pipeline))
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{pipeline}: {line}" for line in expected]


def test_validate_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate", str(tmp_path / "nope.yaml")) == (
        1,
        "",
        f"{tmp_path / 'nope.yaml'}: no such file\n",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {
                "steps": [
                    {"name": "Load_Data", "file": "/abs.py", "dependson": ["x"], "retries": 11},
                    {"name": "b", "resources": {"limits": {"cpu": "lots", "nvidia.com/gpu": 1}}},
                ],
                "env": [{"name": "1BAD"}],
                "concurrencyPolicy": "Sometimes",
                "volume": {"claimName": "data", "mountPath": "relative"},
            },
            [
                "spec.volume.mountPath: 'relative' is not an absolute path",
                "spec.env[0].name: '1BAD' is not an environment variable name (letters, digits, '_', '-' and "
                "'.'; "
                "no leading digit)",
                f"spec.steps[0].name: 'Load_Data' {LABEL}",
                "spec.steps[0].file: '/abs.py' is not a relative path to a .ipynb, .py or .sh file",
                "spec.steps[0].retries: 11 should be less than or equal to 10",
                "spec.steps[0].dependson: unknown field 'dependson' (did you mean 'dependsOn'?)",
                "spec.steps[1].file: is required",
                "spec.steps[1].resources.limits.cpu: 'lots' is not a Kubernetes quantity (such as 2, 500m or "
                "1Gi)",
                "spec.concurrencyPolicy: 'Sometimes' should be 'Allow', 'Queue' or 'Forbid'",
            ],
        ),
        (
            {"steps": [{"name": "a", "file": "a.py", "timeout": 3}], "parameters": [1]},
            [
                "spec.parameters: should be a valid dictionary",
                "spec.steps[0].timeout: unknown field 'timeout' (did you mean 'timeoutSeconds'?)",
            ],
        ),
        (
            {"steps": [{"name": "a", "file": "a.py", "frobnicate": True}]},
            ["spec.steps[0].frobnicate: unknown field 'frobnicate'"],
        ),
    ],
    ids=["many-fields", "dict-and-typo", "unknown-field"],
)
def test_validate_reports_schema_problems_with_field_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, Any], expected: list[str]
) -> None:
    pipeline = write_pipeline(tmp_path, spec)
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 1
    assert err.splitlines() == [f"{pipeline}: {line}" for line in expected]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [
                {"name": "a", "file": "a.py", "dependsOn": ["b"]},
                {"name": "b", "file": "a.py", "dependsOn": ["a"]},
            ],
            ["spec.steps: dependency cycle: a -> b -> a"],
        ),
        (
            [{"name": "a", "file": "a.py", "dependsOn": ["ghost"]}],
            ["spec.steps: step 'a' depends on unknown step 'ghost'"],
        ),
        (
            [{"name": "a", "file": "a.py"}, {"name": "a", "file": "a.py"}],
            ["spec.steps: step 'a' is defined more than once"],
        ),
        ([{"name": "a", "file": "a.py", "dependsOn": ["a"]}], ["spec.steps: step 'a' depends on itself"]),
    ],
    ids=["cycle", "unknown-dependency", "duplicate", "self-dependency"],
)
def test_validate_reports_dag_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: list[dict[str, Any]], expected: list[str]
) -> None:
    pipeline = write_pipeline(tmp_path, {"steps": steps}, {"a.py": ""})
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 1
    assert err.splitlines() == [f"{pipeline}: {line}" for line in expected]


def test_validate_reports_step_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    (project / "folder.py").mkdir(parents=True)
    (tmp_path / "outside.py").write_text("")
    (project / "text.ipynb").write_text("this is not json")
    (project / "empty.ipynb").write_text("{}")
    (project / "cells.ipynb").write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [{"cell_type": "code", "source": ""}],
            }
        )
    )
    write_notebook(project / "good.ipynb", "1")
    pipeline = write_pipeline(
        project,
        {
            "steps": [
                {"name": "gone", "file": "gone.py"},
                {"name": "outside", "file": "../outside.py"},
                {"name": "folder", "file": "folder.py"},
                {"name": "text", "file": "text.ipynb"},
                {"name": "empty", "file": "empty.ipynb"},
                {"name": "cells", "file": "cells.ipynb"},
                {"name": "good", "file": "good.ipynb"},
            ]
        },
    )
    code, _, err = run(capsys, "validate", str(pipeline))
    assert code == 1
    assert err.splitlines() == [
        f"{pipeline}: spec.steps[0].file: 'gone.py' does not exist in {project}",
        f"{pipeline}: spec.steps[1].file: '../outside.py' lies outside the pipeline's directory {project}",
        f"{pipeline}: spec.steps[2].file: 'folder.py' is not a file",
        f"{pipeline}: spec.steps[3].file: 'text.ipynb' is not a valid notebook: not JSON (Expecting value: "
        "line 1 column 1 (char 0))",
        f"{pipeline}: spec.steps[4].file: 'empty.ipynb' is not a valid notebook: no nbformat version",
        f"{pipeline}: spec.steps[5].file: 'cells.ipynb' is not a valid notebook: cells[0]: 'metadata' is a "
        "required property",
    ]


def test_validate_needs_a_file_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2
    assert "the following arguments are required: PIPELINE.yaml" in capsys.readouterr().err


# --- graph -------------------------------------------------------------------------------------------


def test_graph_mermaid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    code, out, _ = run(capsys, "graph", str(pipeline))
    assert code == 0
    assert out == (
        "flowchart LR\n"
        '    s0["load<br/>load.ipynb"]\n'
        '    s1["left<br/>left.py"]\n'
        '    s2["right<br/>right.sh"]\n'
        '    s3["end<br/>end.py"]\n'
        "    s0 --> s1\n"
        "    s0 --> s2\n"
        "    s1 --> s3\n"
        "    s2 --> s3\n"
    )


def test_graph_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    code, out, _ = run(capsys, "graph", str(pipeline), "--format", "dot")
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ['digraph "test" {', "    rankdir=LR;"]
    assert '    "load" [label="load\\nload.ipynb"];' in lines
    assert [line for line in lines if "->" in line] == [
        '    "load" -> "left";',
        '    "load" -> "right";',
        '    "left" -> "end";',
        '    "right" -> "end";',
    ]
    assert lines[-1] == "}"


RUN_STATUS = {
    "phase": "Failed",
    "steps": {
        "load": {"phase": "Succeeded"},
        "left": {"phase": "Failed"},
        "right": {"phase": "Succeeded"},
        "end": {"phase": "Skipped"},
    },
}


@pytest.mark.parametrize("wrapped", [False, True], ids=["run.json", "PipelineRun"])
def test_graph_colours_steps_by_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wrapped: bool
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    record = tmp_path / "run.json"
    body = (
        {"apiVersion": "orchest.io/v1alpha1", "kind": "PipelineRun", "status": RUN_STATUS}
        if wrapped
        else RUN_STATUS
    )
    record.write_text(json.dumps(body))
    code, out, _ = run(capsys, "graph", str(pipeline), "--run", str(record))
    assert code == 0
    assert '    s1["left<br/>left.py<br/>Failed"]' in out
    assert "    classDef succeeded fill:#d3f9d8,stroke:#2f9e44,color:#212529" in out
    assert "    class s0,s2 succeeded" in out
    assert "    class s1 failed" in out
    assert "    class s3 skipped" in out
    code, out, _ = run(capsys, "graph", str(pipeline), "--run", str(record), "--format", "dot")
    assert '    "left" [label="left\\nleft.py\\nFailed", fillcolor="#ffe3e3", color="#e03131"];' in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "orchest: {r}: no such run file"),
        (
            "{oops",
            "orchest: {r}: not a run record: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ('{"steps": {"a": {"phase": "Exploded"}}}', "orchest: {r}: not a run record (steps.a.phase)"),
    ],
)
def test_graph_bad_run_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    record = tmp_path / "run.json"
    if content is not None:
        record.write_text(content)
    assert run(capsys, "graph", str(pipeline), "--run", str(record)) == (
        1,
        "",
        expected.format(r=record) + "\n",
    )


def test_graph_of_an_invalid_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, {"steps": [{"name": "a", "file": "a.py", "dependsOn": ["a"]}]})
    assert run(capsys, "graph", str(pipeline)) == (
        1,
        "",
        f"{pipeline}: spec.steps: step 'a' depends on itself\n",
    )


def test_graph_images_need_graphviz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run(capsys, "graph", str(pipeline), "--format", "png")
    assert (code, out) == (1, "")
    assert err == (
        "orchest: --format png needs Graphviz: install it (e.g. `apt-get install graphviz` or `brew install "
        "graphviz`) so that `dot` is on PATH, or use --format svg, dot or mermaid\n"
    )


def test_graph_svg_needs_no_graphviz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    record = tmp_path / "run.json"
    record.write_text(json.dumps(RUN_STATUS))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run(capsys, "graph", str(pipeline), "--format", "svg", "--run", str(record))
    assert (code, err) == (0, "")
    assert out.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert 'data-step="left" data-phase="Failed"' in out
    assert out.count("data-from=") == 4


def _fake_dot(directory: Path, script: str) -> None:
    directory.mkdir()
    dot = directory / "dot"
    dot.write_text("#!/bin/sh\n" + script)
    dot.chmod(dot.stat().st_mode | stat.S_IEXEC)


def test_graph_images_through_graphviz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    # A stand-in for Graphviz: answers with the format it was asked for and the size of its input.
    _fake_dot(tmp_path / "bin", 'printf "%s:" "$1"; wc -c | tr -d " "\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    target = tmp_path / "graph.png"
    assert run(capsys, "graph", str(pipeline), "--format", "png", "-o", str(target)) == (0, "", "")
    _, dot_text, _ = run(capsys, "graph", str(pipeline), "--format", "dot")
    assert target.read_text() == f"-Tpng:{len(dot_text.encode())}\n"


def test_graph_reports_graphviz_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    _fake_dot(tmp_path / "bin", 'echo "Error: syntax error in line 1" >&2; exit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    code, _, err = run(capsys, "graph", str(pipeline), "--format", "png", "-o", str(tmp_path / "g.png"))
    assert (code, err) == (1, "orchest: Graphviz failed: Error: syntax error in line 1\n")


def test_graph_writes_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write_pipeline(tmp_path, DIAMOND)
    target = tmp_path / "graph.mmd"
    assert run(capsys, "graph", str(pipeline), "-o", str(target)) == (0, "", "")
    assert target.read_text().startswith("flowchart LR\n")
    code, _, err = run(capsys, "graph", str(pipeline), "-o", str(tmp_path / "no" / "such" / "dir.mmd"))
    assert (code, err) == (
        1,
        f"orchest: cannot write {tmp_path / 'no' / 'such' / 'dir.mmd'}: No such file or directory\n",
    )


# --- convert -----------------------------------------------------------------------------------------


def test_convert_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "convert", str(ROOT / "examples" / "orchest" / "housing.orchest"))
    assert (code, err) == (0, "")
    document = PipelineDocument.model_validate(yaml.safe_load(out))
    assert document.metadata.name == "housing-prices"
    assert document.spec.parameters == {"test_fraction": 0.2}
    steps = {s.name: s for s in document.spec.steps}
    assert list(steps) == ["get-data", "clean-featurize", "train-model", "train-model-2", "evaluate"]
    assert steps["get-data"].parameters == {"source": "housing.csv"}
    assert steps["clean-featurize"].depends_on == ["get-data"]
    assert steps["train-model-2"].file == "train-forest.ipynb"
    assert steps["train-model-2"].parameters == {"model": "forest", "trees": 50}
    assert steps["evaluate"].depends_on == ["train-model", "train-model-2"]
    assert (
        "#   environment c56ab762-539c-4cce-9b1e-c4b00300ec6f: get-data, clean-featurize, evaluate\n" in out
    )
    assert "#   environment 0f6e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c: train-model, train-model-2\n" in out


def _orchest(steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "My Pipeline", "parameters": {}, "steps": steps, **extra}


def _step(title: str, file: str, *incoming: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "file_path": file,
        "incoming_connections": list(incoming),
        "environment": "",
        **extra,
    }


def test_convert_writes_a_file_in_dependency_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.orchest"
    services = {"tensorboard": {"image": "tensorflow/tensorflow"}}
    steps = {"u2": _step("Second", "b.py", "u1"), "u1": _step("", "First Notebook.ipynb")}
    source.write_text(json.dumps(_orchest(steps, services=services)))
    target = tmp_path / "pipeline.yaml"
    assert run(capsys, "convert", str(source), "-o", str(target)) == (0, "", "")
    text = target.read_text()
    assert "# Orchest services are not converted: tensorboard\n" in text
    document = PipelineDocument.model_validate(yaml.safe_load(text))
    assert document.metadata.name == "my-pipeline"
    assert [(s.name, s.depends_on) for s in document.spec.steps] == [
        ("first-notebook", []),
        ("second", ["first-notebook"]),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "{nope",
            [
                "orchest: {s}: not valid JSON: Expecting property name enclosed in double quotes: line 1 "
                "column 2 (char 1)"
            ],
        ),
        ("[1]", ["{s}: expected an Orchest pipeline (a JSON object with name and steps)"]),
        ('{"name": "x"}', ["{s}: steps: expected an object of steps keyed by uuid"]),
        ('{"steps": {"u1": 3}}', ["{s}: steps.u1: expected an object"]),
        (
            json.dumps(_orchest({"u1": _step("R step", "analysis.R"), "u2": {"title": "No file"}})),
            [
                "{s}: steps.u1 (R step): 'analysis.R' cannot be run: steps are .ipynb, .py or .sh files",
                "{s}: steps.u2 (No file): file_path is missing",
            ],
        ),
        (
            json.dumps(_orchest({"u1": _step("A", "a.py", "u9")})),
            ["{s}: steps.u1 (A): incoming connection from unknown step 'u9'"],
        ),
        (
            json.dumps(_orchest({"u1": _step("A", "a.py", "u2"), "u2": _step("B", "b.py", "u1")})),
            ["{s}: dependency cycle: a -> b -> a"],
        ),
        (
            json.dumps(_orchest({"u1": _step("A", "/abs/a.py")})),
            ["{s}: spec.steps[0].file: '/abs/a.py' is not a relative path to a .ipynb, .py or .sh file"],
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "no-steps",
        "bad-step",
        "unsupported-and-missing",
        "unknown-connection",
        "cycle",
        "absolute-path",
    ],
)
def test_convert_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: list[str]
) -> None:
    source = tmp_path / "p.orchest"
    source.write_text(content)
    code, out, err = run(capsys, "convert", str(source))
    assert (code, out) == (1, "")
    assert err.splitlines() == [line.format(s=source) for line in expected]


def test_convert_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "gone.orchest"
    assert run(capsys, "convert", str(source)) == (1, "", f"orchest: {source}: no such file\n")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Get data", "get-data"),
        ("  Clean & featurize!! ", "clean-featurize"),
        ("Ünïcode ñame", "n-code-ame"),
        ("***", "step"),
        ("x" * 60, "x" * 40),
        ("a" * 39 + "-b", "a" * 39),
    ],
)
def test_dns_label(title: str, expected: str) -> None:
    assert dns_label(title, 40, "step") == expected


def test_unique_names_stay_within_the_limit() -> None:
    taken: set[str] = set()
    names = [unique("x" * 40, taken, 40) for _ in range(3)]
    assert names == ["x" * 40, "x" * 38 + "-2", "x" * 38 + "-3"]
