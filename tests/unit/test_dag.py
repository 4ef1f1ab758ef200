"""The planner, table-driven: validation, every selection mode, reruns and what may start now."""

from __future__ import annotations

import random

import pytest

from orchest_operator.dag import Dag, PlanError, problems
from orchest_operator.facts import Decision, decide
from orchest_operator.models import FailurePolicy, PipelineSpec, RunPhase, SelectionMode, Step, StepPhase

P, R, S, F, K, C, U = (
    StepPhase.PENDING,
    StepPhase.RUNNING,
    StepPhase.SUCCEEDED,
    StepPhase.FAILED,
    StepPhase.SKIPPED,
    StepPhase.CANCELLED,
    StepPhase.REUSED,
)


NAME_RULE = (
    "must be a DNS-1123 label of at most 40 characters (lowercase letters, digits and '-', starting and "
    "ending with a letter or digit)"
)


def steps(*specs: str) -> list[Step]:
    """``"d:b,c"`` is step d depending on b and c."""
    out = []
    for spec in specs:
        name, _, deps = spec.partition(":")
        out.append(Step(name=name, file=f"{name}.py", depends_on=[d for d in deps.split(",") if d]))
    return out


def raw(name: str, *deps: str) -> Step:
    """A step that skipped pydantic's checks, as a hand-built object might."""
    return Step.model_construct(name=name, file=f"{name}.py", depends_on=list(deps))


# A diamond a -> (b, c) -> d plus a disconnected chain x -> y.
DIAMOND = Dag.of(steps("a", "b:a", "c:a", "d:b,c", "x", "y:x"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (steps("a", "b:a", "c:a", "d:b,c"), []),
        (steps("a", "b"), []),
        ([], ["pipeline has no steps"]),
        (steps("a", "a"), ["step 'a' is defined more than once"]),
        ([raw("a", "a")], ["step 'a' depends on itself"]),
        (steps("a:zz"), ["step 'a' depends on unknown step 'zz'"]),
        (steps("a:b", "b:a"), ["dependency cycle: a -> b -> a"]),
        (steps("a:c", "b:a", "c:b", "x"), ["dependency cycle: a -> b -> c -> a"]),
        (steps("x", "c:b", "b:c"), ["dependency cycle: c -> b -> c"]),
        ([raw("Bad_Name")], [f"step name 'Bad_Name' {NAME_RULE}"]),
        ([raw("a" * 41)], [f"step name '{'a' * 41}' {NAME_RULE}"]),
        (
            [*steps("a", "a"), raw("b", "b", "nope")],
            [
                "step 'a' is defined more than once",
                "step 'b' depends on itself",
                "step 'b' depends on unknown step 'nope'",
            ],
        ),
    ],
    ids=[
        "diamond",
        "independent",
        "empty",
        "duplicate",
        "self-dependency",
        "unknown-dependency",
        "two-cycle",
        "three-cycle",
        "cycle-not-at-start",
        "bad-name",
        "long-name",
        "several",
    ],
)
def test_problems(given: list[Step], expected: list[str]) -> None:
    assert problems(given) == expected
    if expected:
        with pytest.raises(PlanError) as caught:
            Dag.of(given)
        assert caught.value.problems == expected


def test_order_is_topological_with_declaration_order_breaking_ties() -> None:
    assert DIAMOND.order == ("a", "b", "c", "d", "x", "y")
    assert Dag.of(steps("y:x", "x", "b", "a")).order == ("x", "y", "b", "a")


def test_dag_of_a_spec() -> None:
    spec = PipelineSpec(steps=steps("a", "b:a"))
    assert Dag.of(spec).order == ("a", "b")
    assert Dag.of(spec).upstream("b") == ["a"]


@pytest.mark.parametrize(
    ("mode", "names", "expected"),
    [
        (SelectionMode.ALL, [], ["a", "b", "c", "d", "x", "y"]),
        ("All", [], ["a", "b", "c", "d", "x", "y"]),
        (SelectionMode.SELECTED, ["d"], ["d"]),
        (SelectionMode.SELECTED, ["d", "a", "d"], ["a", "d"]),
        (SelectionMode.INCOMING, ["d"], ["a", "b", "c", "d"]),
        (SelectionMode.INCOMING, ["b"], ["a", "b"]),
        (SelectionMode.INCOMING, ["y", "b"], ["a", "b", "x", "y"]),
        (SelectionMode.INCOMING, ["a"], ["a"]),
        (SelectionMode.DOWNSTREAM, ["b"], ["b", "d"]),
        (SelectionMode.DOWNSTREAM, ["a"], ["a", "b", "c", "d"]),
        (SelectionMode.DOWNSTREAM, ["x"], ["x", "y"]),
        (SelectionMode.DOWNSTREAM, ["d", "x"], ["d", "x", "y"]),
    ],
)
def test_select(mode: SelectionMode | str, names: list[str], expected: list[str]) -> None:
    assert DIAMOND.select(mode, names) == expected


@pytest.mark.parametrize(
    ("mode", "names", "expected"),
    [
        (SelectionMode.SELECTED, [], ["selection mode Selected needs at least one step"]),
        (SelectionMode.INCOMING, [], ["selection mode Incoming needs at least one step"]),
        (SelectionMode.DOWNSTREAM, [], ["selection mode Downstream needs at least one step"]),
        (
            SelectionMode.SELECTED,
            ["zz", "a", "qq"],
            ["selected step 'zz' does not exist", "selected step 'qq' does not exist"],
        ),
        (SelectionMode.ALL, ["zz"], ["selected step 'zz' does not exist"]),
    ],
)
def test_select_errors(mode: SelectionMode, names: list[str], expected: list[str]) -> None:
    with pytest.raises(PlanError) as caught:
        DIAMOND.select(mode, names)
    assert caught.value.problems == expected


def test_select_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="Everything"):
        DIAMOND.select("Everything")


@pytest.mark.parametrize(
    ("selected", "states", "parallelism", "policy", "expected"),
    [
        ("abcdxy", {}, 0, FailurePolicy.FAIL_FAST, ["a", "x"]),
        ("abcdxy", {}, 1, FailurePolicy.FAIL_FAST, ["a"]),
        ("abcdxy", {"a": R}, 2, FailurePolicy.FAIL_FAST, ["x"]),
        ("abcdxy", {"a": R, "x": R}, 2, FailurePolicy.FAIL_FAST, []),
        ("abcdxy", {"a": S}, 0, FailurePolicy.FAIL_FAST, ["b", "c", "x"]),
        ("abcdxy", {"a": S, "b": S}, 0, FailurePolicy.FAIL_FAST, ["c", "x"]),
        ("abcdxy", {"a": S, "b": S, "c": S, "x": S}, 0, FailurePolicy.FAIL_FAST, ["d", "y"]),
        ("abcdxy", {"a": S, "b": S, "c": R}, 0, FailurePolicy.FAIL_FAST, ["x"]),
        # Reused outputs count as done.
        ("abcdxy", {"a": U, "b": U, "c": U}, 0, FailurePolicy.FAIL_FAST, ["d", "x"]),
        # FailFast: nothing new after a failure or a cancelled step; Continue: everything not downstream.
        ("abcdxy", {"a": S, "b": F}, 0, FailurePolicy.FAIL_FAST, []),
        ("abcdxy", {"a": S, "b": C}, 0, FailurePolicy.FAIL_FAST, []),
        ("abcdxy", {"a": S, "b": F}, 0, FailurePolicy.CONTINUE, ["c", "x"]),
        ("abcdxy", {"a": S, "b": F, "c": S}, 0, FailurePolicy.CONTINUE, ["x"]),
        ("abcdxy", {"a": F}, 0, FailurePolicy.CONTINUE, ["x"]),
        ("abcdxy", {"a": F}, 0, "Continue", ["x"]),
        # A skipped step alone does not stop a FailFast run (it never ran).
        ("abcdxy", {"a": S, "b": K}, 0, FailurePolicy.FAIL_FAST, ["c", "x"]),
        # Dependencies outside the selection are taken as satisfied (the shared directory has their outputs).
        ("d", {}, 0, FailurePolicy.FAIL_FAST, ["d"]),
        ("by", {}, 0, FailurePolicy.FAIL_FAST, ["b", "y"]),
        ("abcdxy", {n: S for n in "abcdxy"}, 0, FailurePolicy.FAIL_FAST, []),
    ],
)
def test_ready(
    selected: str,
    states: dict[str, StepPhase],
    parallelism: int,
    policy: FailurePolicy | str,
    expected: list[str],
) -> None:
    assert DIAMOND.ready(list(selected), states, parallelism=parallelism, failure_policy=policy) == expected


@pytest.mark.parametrize(
    ("selected", "states", "expected"),
    [
        ("abcdxy", {}, []),
        # Transitively: d waits on b and c, which can never run either.
        ("abcdxy", {"a": F}, ["b", "c", "d"]),
        ("abcdxy", {"a": S, "c": K}, ["d"]),
        ("abcdxy", {"a": S, "b": F}, ["d"]),
        ("abcdxy", {"a": S, "b": S, "c": K}, ["d"]),
        ("abcdxy", {"a": S, "b": C}, ["d"]),
        ("abcdxy", {"x": F, "a": S}, ["y"]),
        ("abcdxy", {"a": S, "b": F, "d": K}, []),
        ("d", {}, []),
    ],
)
def test_blocked(selected: str, states: dict[str, StepPhase], expected: list[str]) -> None:
    assert DIAMOND.blocked(list(selected), states) == expected


@pytest.mark.parametrize(
    ("previous", "selected", "run", "reused"),
    [
        ({n: S for n in "abcdxy"}, "abcdxy", [], ["a", "b", "c", "d", "x", "y"]),
        ({"a": S, "b": F, "c": S, "d": K, "x": S, "y": S}, "abcdxy", ["b", "d"], ["a", "c", "x", "y"]),
        ({"a": F, "b": K, "c": K, "d": K, "x": S, "y": C}, "abcdxy", ["a", "b", "c", "d", "y"], ["x"]),
        ({"a": S, "b": S, "c": S, "d": S, "x": R}, "abcdxy", ["x", "y"], ["a", "b", "c", "d"]),
        ({"a": U, "b": S, "c": F, "d": K}, "abcd", ["c", "d"], ["a", "b"]),
        # The rerun keeps to the earlier run's selection.
        ({"b": F, "d": K}, "bd", ["b", "d"], []),
        ({"b": S, "d": F}, "bd", ["d"], ["b"]),
        ({}, "ab", ["a", "b"], []),
    ],
)
def test_rerun(previous: dict[str, StepPhase], selected: str, run: list[str], reused: list[str]) -> None:
    assert DIAMOND.rerun(previous, list(selected)) == (run, reused)


def test_rerun_accepts_phase_strings() -> None:
    assert DIAMOND.rerun({"a": "Succeeded", "b": "Failed"}, ["a", "b"]) == (["b"], ["a"])


def _simulate(
    dag: Dag, selected: list[str], *, parallelism: int, fail: set[str], policy: FailurePolicy | str
) -> tuple[Decision, list[str], int]:
    """Drive decide() as a runner does; every running step finishes between two decisions."""
    states: dict[str, StepPhase] = {}
    started: list[str] = []
    peak = 0
    for _ in range(10 * len(selected) + 10):
        decision = decide(dag, selected, states, parallelism=parallelism, failure_policy=policy)
        states = dict(decision.phases)
        if decision.finished:
            return decision, started, peak
        for name in decision.start:
            states[name] = StepPhase.RUNNING
            started.append(name)
        running = [n for n, phase in states.items() if phase is StepPhase.RUNNING]
        peak = max(peak, len(running))
        for name in running:
            states[name] = StepPhase.FAILED if name in fail else StepPhase.SUCCEEDED
    raise AssertionError("the run never finished")


@pytest.mark.parametrize("parallelism", [0, 1, 2, 3])
def test_a_whole_run_respects_dependencies_and_parallelism(parallelism: int) -> None:
    selected = list(DIAMOND.order)
    decision, started, peak = _simulate(
        DIAMOND, selected, parallelism=parallelism, fail=set(), policy="FailFast"
    )
    assert decision.phase is RunPhase.SUCCEEDED
    assert sorted(started) == sorted(selected)
    for name in started:
        for dep in DIAMOND.upstream(name):
            assert started.index(dep) < started.index(name)
    if parallelism:
        assert peak <= parallelism


@pytest.mark.parametrize(
    ("policy", "phases"),
    [
        # a and x run together and a fails: x still finishes, everything not yet started is skipped.
        (FailurePolicy.FAIL_FAST, {"a": F, "b": K, "c": K, "d": K, "x": S, "y": K}),
        (FailurePolicy.CONTINUE, {"a": F, "b": K, "c": K, "d": K, "x": S, "y": S}),
    ],
)
def test_failure_policies_over_a_whole_run(policy: FailurePolicy, phases: dict[str, StepPhase]) -> None:
    decision, _, _ = _simulate(DIAMOND, list(DIAMOND.order), parallelism=0, fail={"a"}, policy=policy)
    assert decision.phase is RunPhase.FAILED
    assert decision.phases == phases


def test_a_thousand_steps_validate_and_plan() -> None:
    rng = random.Random(1000)
    names = [f"step-{i}" for i in range(1000)]
    big = [
        Step(name=name, file=f"{name}.py", depends_on=sorted(set(rng.sample(names[:i], min(i, 3)))))
        for i, name in enumerate(names)
    ]
    spec = PipelineSpec(steps=big)
    assert problems(big) == []
    dag = Dag.of(spec)
    assert len(dag.order) == 1000
    selected = dag.select(SelectionMode.INCOMING, ["step-999"])
    assert selected[-1] == "step-999"
    decision, started, peak = _simulate(dag, dag.select("All"), parallelism=8, fail=set(), policy="FailFast")
    assert decision.phase is RunPhase.SUCCEEDED
    assert len(started) == 1000
    assert peak <= 8
