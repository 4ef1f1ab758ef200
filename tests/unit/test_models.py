"""The wire models: defaults, camelCase aliases, and the inputs they refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchest_operator.models import (
    ConcurrencyPolicy,
    FailurePolicy,
    PipelineDocument,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    Priority,
    RunPhase,
    SelectionMode,
    Step,
    StepPhase,
    Volume,
    step_phase,
)


def test_pipeline_defaults() -> None:
    spec = PipelineSpec.model_validate({"steps": [{"name": "a", "file": "a.ipynb"}]})
    assert spec.image is None
    assert spec.volume is None
    assert spec.parameters == {}
    assert spec.env == []
    assert spec.concurrency_policy is ConcurrencyPolicy.QUEUE
    assert spec.run_history_limit == 10
    assert spec.session.enabled is False
    assert spec.session.kernels == []
    step = spec.steps[0]
    assert (step.depends_on, step.retries, step.timeout_seconds, step.parameters) == ([], 0, None, None)
    assert Volume(claim_name="data").mount_path == "/project"


def test_run_defaults() -> None:
    spec = PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}})
    assert spec.selection.mode is SelectionMode.ALL
    assert spec.selection.steps == []
    assert spec.parallelism == 0
    assert spec.failure_policy is FailurePolicy.FAIL_FAST
    assert spec.priority is Priority.BACKGROUND
    assert spec.cancel is False
    assert spec.rerun_of is None
    assert PipelineRunStatus().phase is RunPhase.PENDING


def test_aliases_in_and_out() -> None:
    by_alias = Step.model_validate({"name": "b", "file": "b.py", "dependsOn": ["a"], "timeoutSeconds": 5})
    by_name = Step(name="b", file="b.py", depends_on=["a"], timeout_seconds=5)
    assert by_alias == by_name
    wire = {"name": "b", "file": "b.py", "dependsOn": ["a"], "retries": 0, "timeoutSeconds": 5}
    assert by_alias.wire() == wire
    run = PipelineRunSpec.model_validate(
        {"pipelineRef": {"name": "p"}, "failurePolicy": "Continue", "rerunOf": "r1"}
    )
    assert run.wire()["failurePolicy"] == "Continue"
    assert run.wire()["rerunOf"] == "r1"
    volume = Volume.model_validate({"claimName": "data", "subPath": "team/a"})
    assert volume.wire() == {"claimName": "data", "subPath": "team/a", "mountPath": "/project"}


def test_documents() -> None:
    doc = PipelineDocument.model_validate(
        {"metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"steps": [{"name": "a", "file": "a.py"}]}}
    )
    assert (doc.api_version, doc.kind) == ("orchest.io/v1alpha1", "Pipeline")


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": 1}},
        {"limits": {"cpu": 2, "memory": "1.5e3M", "ephemeral-storage": "10G"}},
        {"requests": {"cpu": "0.25"}},
    ],
)
def test_resources_accept_quantities(resources: dict[str, Any]) -> None:
    step = Step.model_validate({"name": "a", "file": "a.py", "resources": resources})
    assert step.resources is not None


ONE = [{"name": "a", "file": "a.py"}]


def _error(model: type, data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    first = caught.value.errors()[0]
    return first["loc"], first["type"]


@pytest.mark.parametrize(
    ("data", "loc", "kind"),
    [
        ({"name": "Load", "file": "a.py"}, ("name",), "string_pattern_mismatch"),
        ({"name": "load_data", "file": "a.py"}, ("name",), "string_pattern_mismatch"),
        ({"name": "-a", "file": "a.py"}, ("name",), "string_pattern_mismatch"),
        ({"name": "a" * 41, "file": "a.py"}, ("name",), "string_too_long"),
        ({"name": "", "file": "a.py"}, ("name",), "string_too_short"),
        ({"name": "a", "file": "/abs/a.py"}, ("file",), "string_pattern_mismatch"),
        ({"name": "a", "file": "a.R"}, ("file",), "string_pattern_mismatch"),
        ({"name": "a"}, ("file",), "missing"),
        ({"name": "a", "file": "a.py", "retries": 11}, ("retries",), "less_than_equal"),
        ({"name": "a", "file": "a.py", "retries": -1}, ("retries",), "greater_than_equal"),
        ({"name": "a", "file": "a.py", "timeoutSeconds": 0}, ("timeoutSeconds",), "greater_than_equal"),
        ({"name": "a", "file": "a.py", "dependsOn": ["Bad"]}, ("dependsOn", 0), "string_pattern_mismatch"),
        ({"name": "a", "file": "a.py", "depends": ["b"]}, ("depends",), "extra_forbidden"),
        (
            {"name": "a", "file": "a.py", "env": [{"name": "1X"}]},
            ("env", 0, "name"),
            "string_pattern_mismatch",
        ),
        (
            {"name": "a", "file": "a.py", "resources": {"limits": {"cpu": "lots"}}},
            ("resources", "limits", "cpu", "int"),
            "int_parsing",
        ),
    ],
)
def test_step_rejects(data: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    assert _error(Step, data) == (loc, kind)


@pytest.mark.parametrize(
    ("data", "loc", "kind"),
    [
        ({"steps": []}, ("steps",), "too_short"),
        ({}, ("steps",), "missing"),
        (
            {"steps": [{"name": f"s{i}", "file": "a.py"} for i in range(1001)]},
            ("steps",),
            "too_long",
        ),
        ({"steps": ONE, "concurrencyPolicy": "Never"}, ("concurrencyPolicy",), "enum"),
        ({"steps": ONE, "runHistoryLimit": -1}, ("runHistoryLimit",), "greater_than_equal"),
        ({"steps": ONE, "volume": {}}, ("volume", "claimName"), "missing"),
        (
            {"steps": ONE, "volume": {"claimName": "d", "mountPath": "rel"}},
            ("volume", "mountPath"),
            "string_pattern_mismatch",
        ),
        ({"steps": ONE, "parameters": []}, ("parameters",), "dict_type"),
    ],
)
def test_pipeline_spec_rejects(data: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    assert _error(PipelineSpec, data) == (loc, kind)


@pytest.mark.parametrize(
    ("data", "loc", "kind"),
    [
        ({}, ("pipelineRef",), "missing"),
        ({"pipelineRef": {"name": "p"}, "parallelism": -1}, ("parallelism",), "greater_than_equal"),
        ({"pipelineRef": {"name": "p"}, "failurePolicy": "Stop"}, ("failurePolicy",), "enum"),
        ({"pipelineRef": {"name": "p"}, "priority": "High"}, ("priority",), "enum"),
        ({"pipelineRef": {"name": "p"}, "selection": {"mode": "Some"}}, ("selection", "mode"), "enum"),
        ({"pipelineRef": {"name": "P"}}, ("pipelineRef", "name"), "string_pattern_mismatch"),
    ],
)
def test_run_spec_rejects(data: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    assert _error(PipelineRunSpec, data) == (loc, kind)


def test_document_kind_is_checked() -> None:
    document = {"kind": "PipelineRun", "metadata": {"name": "p"}, "spec": {"steps": ONE}}
    assert _error(PipelineDocument, document) == (("kind",), "literal_error")


def test_phase_helpers() -> None:
    assert [p for p in StepPhase if p.finished] == [
        StepPhase.SUCCEEDED,
        StepPhase.FAILED,
        StepPhase.SKIPPED,
        StepPhase.CANCELLED,
        StepPhase.REUSED,
        StepPhase.CACHED,
    ]
    assert [p for p in StepPhase if p.ok] == [StepPhase.SUCCEEDED, StepPhase.REUSED, StepPhase.CACHED]
    assert [p for p in RunPhase if p.finished] == [RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED]


def test_step_phase_converts_like_the_enum() -> None:
    for phase in StepPhase:
        assert step_phase(phase.value) is phase and step_phase(phase) is phase
    with pytest.raises(ValueError, match="'Done' is not a valid StepPhase"):
        step_phase("Done")


def test_spec_step_lookup() -> None:
    spec = PipelineSpec(steps=[Step(name="a", file="a.py"), Step(name="b", file="b.sh")])
    assert spec.step("b").file == "b.sh"


@pytest.mark.parametrize("glob", ["/etc/passwd", "../x", "data/../../x", "..", "a/.."])
def test_cache_globs_stay_inside_the_pipeline_directory(glob: str) -> None:
    with pytest.raises(ValidationError, match="leaves the pipeline directory"):
        Step(name="a", file="a.py", outputs=[glob])
    with pytest.raises(ValidationError, match="leaves the pipeline directory"):
        Step(name="a", file="a.py", inputs=[glob])


def test_a_step_caches_as_the_pipeline_says_unless_it_says_otherwise() -> None:
    spec = PipelineSpec(
        cache=True,
        steps=[Step(name="a", file="a.py"), Step(name="b", file="b.py", cache=False)],
    )
    assert spec.caches("a") and not spec.caches("b")
    assert not PipelineSpec(steps=[Step(name="a", file="a.py", cache=None)]).caches("a")
