"""The CEL rules of the generated CRDs compile, and reject at admission what they are meant to.

No API server runs here, so cel-python evaluates the rules on objects shaped as the API server would see
them (defaults applied, i.e. the models' wire form).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pytest

from orchest_operator.crds import all_crds
from orchest_operator.models import PipelineRunSpec, Step

ENV = celpy.Environment()


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
    program = ENV.program(ENV.compile(rule))
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
    ],
)
def test_everything_else_is_immutable(change: dict[str, Any]) -> None:
    old = run_spec()
    assert not admitted_update(old, {**old, **change})
