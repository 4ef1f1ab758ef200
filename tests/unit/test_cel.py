"""The CEL rules of the generated CRDs compile, and reject at admission what they are meant to.

No API server runs here, so cel-python evaluates the rules on objects shaped as the API server would see
them (defaults applied, i.e. the models' wire form).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import celpy
import pytest

from orchest_operator.crds import all_crds
from orchest_operator.models import PipelineJobSpec, PipelineRunSpec, Step

ENV = celpy.Environment()


def _substring(text: celpy.celtypes.StringType, start: celpy.celtypes.IntType) -> celpy.celtypes.StringType:
    """Kubernetes' CEL has the strings extension library (``substring``); cel-python has not."""
    return celpy.celtypes.StringType(text[int(start) :])


FUNCTIONS = {"substring": _substring}


def rules(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule
        for key, value in node.items():
            yield from rules(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from rules(value, path)


ALL_RULES = [(p, r) for crd in all_crds().values() for p, r in rules(crd)]


def admits(rule: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> bool:
    program = ENV.program(ENV.compile(rule), functions=FUNCTIONS)
    activation = {"self": celpy.json_to_cel(new)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    return bool(program.evaluate(activation))


def rule_at(suffix: str, contains: str) -> str:
    return next(r["rule"] for p, r in ALL_RULES if p.endswith(suffix) and contains in r["rule"])


@pytest.mark.parametrize(("path", "rule"), ALL_RULES, ids=[r["rule"][:50] for _, r in ALL_RULES])
def test_every_rule_compiles_and_has_a_message(path: str, rule: dict[str, str]) -> None:
    ENV.compile(rule["rule"])
    assert rule["message"]


def test_a_step_cannot_depend_on_itself() -> None:
    rule = rule_at(".items", "dependsOn")
    ok = Step(name="a", file="a.py", depends_on=["b"]).wire()
    assert admits(rule, ok)
    assert not admits(rule, {**ok, "dependsOn": ["b", "a"]})


def test_selected_mode_needs_steps() -> None:
    rule = rule_at(".selection", "size(self.steps)")
    assert admits(rule, {"mode": "All", "steps": []})
    assert admits(rule, {"mode": "Selected", "steps": ["a"]})
    assert not admits(rule, {"mode": "Incoming", "steps": []})


@pytest.mark.parametrize("glob", ["/etc/x", "../x", "data/../../x", "..", "a/.."])
def test_cache_globs_cannot_leave_the_pipeline_directory(glob: str) -> None:
    rule = rule_at(".outputs", "startsWith")
    assert admits(rule, ["data/*.csv", "out/..x", "..hidden", "a..b/c"])
    assert not admits(rule, ["data/*.csv", glob])


def run_spec(**extra: Any) -> dict[str, Any]:
    return PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}, **extra}).wire()


def immutability_rules() -> list[str]:
    return [r["rule"] for p, r in ALL_RULES if "oldSelf" in r["rule"]]


def admitted_update(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(admits(rule, new, old) for rule in immutability_rules())


def test_cancel_may_change_after_creation() -> None:
    old = run_spec(timeoutSeconds=60)
    assert admitted_update(old, {**old, "cancel": True})


@pytest.mark.parametrize(
    "change",
    [
        {"pipelineRef": {"name": "other"}},
        {"selection": {"mode": "Selected", "steps": ["a"]}},
        {"parameters": {"x": 1}},
        {"parallelism": 3},
        {"failurePolicy": "Continue"},
        {"priority": "Interactive"},
        {"timeoutSeconds": 5},
        {"rerunOf": "r0"},
        {"cache": False},
        {"workspace": "Isolated"},
        {"workspaceExclude": ["data/**"]},
    ],
)
def test_everything_else_is_immutable(change: dict[str, Any]) -> None:
    old = run_spec()
    assert not admitted_update(old, {**old, **change})


def job_spec(**extra: Any) -> dict[str, Any]:
    return PipelineJobSpec.model_validate({"pipelineRef": {"name": "p"}, **extra}).wire()


def job_admits(spec: dict[str, Any]) -> bool:
    return all(
        admits(r["rule"], spec) for p, r in ALL_RULES if p.endswith("spec") and "self.include" in r["rule"]
    )


@pytest.mark.parametrize(
    ("matrix", "include", "ok"),
    [
        ({}, [], True),
        ({"a": list(range(256))}, [], True),
        ({"a": list(range(256))}, [{"a": 1}], False),
        ({"a": list(range(16)), "b": list(range(16))}, [], True),
        ({"a": list(range(16)), "b": list(range(17))}, [], False),
        ({"a": list(range(16)), "b": list(range(15))}, [{"a": 0}] * 16, True),
        ({"a": list(range(16)), "b": list(range(15))}, [{"a": 0}] * 17, False),
        ({k: [1, 2] for k in "abcdefgh"}, [], True),
        ({**{k: [1, 2] for k in "abcdefg"}, "h": [1, 2, 3]}, [], False),
        # eight lists of 256 values: the partial products are capped, so CEL never overflows
        ({k: list(range(256)) for k in "abcdefgh"}, [], False),
        ({}, [{"a": 1}] * 256, True),
    ],
)
def test_a_batch_has_at_most_256_combinations(matrix: dict[str, Any], include: list[Any], ok: bool) -> None:
    assert job_admits(job_spec(matrix=matrix, include=include)) is ok


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        (None, True),
        ("@hourly", True),
        ("*/5 * * * *", True),
        ("@every 10s", True),
        ("@every 1h30m", True),
        ("@every 9s", False),
        ("@every 9999ms", False),
        ("@every 500ms", False),
    ],
)
def test_every_is_at_least_ten_seconds(schedule: str | None, ok: bool) -> None:
    rule = rule_at("spec", "@every")
    spec = job_spec(schedule=schedule) if schedule else job_spec()
    assert admits(rule, spec) is ok


def job_property(name: str) -> dict[str, Any]:
    crd = all_crds()["orchest.io_pipelinejobs.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"][name]


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("@daily", True),
        ("@every 1h30m", True),
        ("*/5 9-17 * * MON-FRI", True),
        ("0 0 L * *", True),
        ("* * * *", False),
        ("* * * * * *", False),
        ("@every 10", False),
        ("@every  10s", False),
        ("@fortnightly", False),
        (" @daily", False),
    ],
)
def test_the_schedule_pattern_refuses_malformed_expressions_at_admission(schedule: str, ok: bool) -> None:
    """Schema patterns are RE2 on the API server; this one uses nothing RE2 and Python's re read alike."""
    pattern = job_property("schedule")["pattern"]
    assert bool(re.fullmatch(pattern, schedule)) is ok


@pytest.mark.parametrize(
    ("zone", "ok"),
    [
        ("UTC", True),
        ("Europe/Berlin", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Etc/GMT+5", True),
        ("../etc/passwd", False),
        ("Europe/", False),
        ("", False),
    ],
)
def test_the_time_zone_pattern(zone: str, ok: bool) -> None:
    assert bool(re.fullmatch(job_property("timeZone")["pattern"], zone)) is ok
