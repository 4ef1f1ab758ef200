"""``decide``: from observed step phases to the run's phase, condition and next actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchest_operator.dag import Dag
from orchest_operator.facts import Reason, decide, progress
from orchest_operator.models import ConditionStatus, FailurePolicy, RunPhase, Step, StepPhase

P, R, S, F, K, C, U = (
    StepPhase.PENDING,
    StepPhase.RUNNING,
    StepPhase.SUCCEEDED,
    StepPhase.FAILED,
    StepPhase.SKIPPED,
    StepPhase.CANCELLED,
    StepPhase.REUSED,
)

DAG = Dag.of(
    [
        Step(name="a", file="a.ipynb"),
        Step(name="b", file="b.py", depends_on=["a"]),
        Step(name="c", file="c.sh", depends_on=["a"]),
        Step(name="d", file="d.py", depends_on=["b", "c"]),
        Step(name="x", file="x.py"),
    ]
)
ALL = list(DAG.order)
START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("observed", "policy", "phase", "reason", "start", "phases"),
    [
        ({}, FailurePolicy.FAIL_FAST, RunPhase.RUNNING, Reason.RUNNING, ["a", "x"], dict.fromkeys(ALL, P)),
        (
            {"a": S, "x": R},
            FailurePolicy.FAIL_FAST,
            RunPhase.RUNNING,
            Reason.RUNNING,
            ["b", "c"],
            {"a": S, "b": P, "c": P, "d": P, "x": R},
        ),
        (
            dict.fromkeys(ALL, S),
            FailurePolicy.FAIL_FAST,
            RunPhase.SUCCEEDED,
            Reason.SUCCEEDED,
            [],
            dict.fromkeys(ALL, S),
        ),
        (
            {"a": U, "b": U, "c": S, "d": S, "x": U},
            FailurePolicy.FAIL_FAST,
            RunPhase.SUCCEEDED,
            Reason.SUCCEEDED,
            [],
            {"a": U, "b": U, "c": S, "d": S, "x": U},
        ),
        # FailFast: what is pending becomes Skipped, what runs may finish.
        (
            {"a": S, "b": F, "c": R, "x": R},
            FailurePolicy.FAIL_FAST,
            RunPhase.RUNNING,
            Reason.RUNNING,
            [],
            {"a": S, "b": F, "c": R, "d": K, "x": R},
        ),
        (
            {"a": S, "b": F, "c": S, "x": S},
            FailurePolicy.FAIL_FAST,
            RunPhase.FAILED,
            Reason.FAILED,
            [],
            {"a": S, "b": F, "c": S, "d": K, "x": S},
        ),
        (
            {"a": F},
            FailurePolicy.FAIL_FAST,
            RunPhase.FAILED,
            Reason.FAILED,
            [],
            {"a": F, "b": K, "c": K, "d": K, "x": K},
        ),
        # Continue: everything that does not depend on the failure still runs; the whole branch below the
        # failure is skipped at once (d too), or the run would wait for a step that never starts.
        (
            {"a": F},
            FailurePolicy.CONTINUE,
            RunPhase.RUNNING,
            Reason.RUNNING,
            ["x"],
            {"a": F, "b": K, "c": K, "d": K, "x": P},
        ),
        (
            {"a": F, "x": S},
            FailurePolicy.CONTINUE,
            RunPhase.FAILED,
            Reason.FAILED,
            [],
            {"a": F, "b": K, "c": K, "d": K, "x": S},
        ),
    ],
    ids=[
        "start",
        "dependents-become-ready",
        "all-succeeded",
        "reused-counts-as-success",
        "failfast-lets-running-finish",
        "failfast-ends-failed",
        "failfast-skips-independent",
        "continue-runs-independent",
        "continue-ends-failed",
    ],
)
def test_decide(
    observed: dict[str, StepPhase],
    policy: FailurePolicy,
    phase: RunPhase,
    reason: str,
    start: list[str],
    phases: dict[str, StepPhase],
) -> None:
    decision = decide(DAG, ALL, observed, failure_policy=policy)
    assert (decision.phase, decision.reason, decision.start) == (phase, reason, start)
    assert decision.phases == phases
    assert decision.stop == []


def test_condition_status_follows_the_phase() -> None:
    assert decide(DAG, ALL, {}).condition_status is ConditionStatus.UNKNOWN
    assert decide(DAG, ALL, dict.fromkeys(ALL, S)).condition_status is ConditionStatus.TRUE
    assert decide(DAG, ALL, {"a": F}).condition_status is ConditionStatus.FALSE
    assert decide(DAG, ALL, {"a": R}, cancel=True).condition_status is ConditionStatus.FALSE


def test_messages() -> None:
    assert decide(DAG, ALL, {"a": S}).message == "1/5 steps done"
    assert decide(DAG, ALL, dict.fromkeys(ALL, S)).message == "all 5 steps succeeded"
    assert decide(DAG, ALL, {"a": S, "b": F, "c": S, "x": S}).message == "step(s) failed: b"


def test_parallelism_limits_what_starts() -> None:
    assert decide(DAG, ALL, {}, parallelism=1).start == ["a"]
    assert decide(DAG, ALL, {"a": S, "x": R}, parallelism=2).start == ["b"]
    assert decide(DAG, ALL, {"a": S, "x": R, "b": R}, parallelism=2).start == []


def test_cancel_stops_running_and_cancels_pending() -> None:
    decision = decide(DAG, ALL, {"a": S, "b": R, "c": R, "x": S}, cancel=True)
    assert decision.phase is RunPhase.CANCELLED
    assert decision.reason == Reason.CANCELLED
    assert decision.stop == ["b", "c"]
    assert decision.start == []
    assert decision.phases == {"a": S, "b": C, "c": C, "d": C, "x": S}


def test_cancel_after_the_end_changes_nothing() -> None:
    decision = decide(DAG, ALL, dict.fromkeys(ALL, S), cancel=True)
    assert decision.phase is RunPhase.SUCCEEDED


@pytest.mark.parametrize(
    ("elapsed", "phase", "reason"),
    [
        (timedelta(seconds=59), RunPhase.RUNNING, Reason.RUNNING),
        (timedelta(seconds=60), RunPhase.FAILED, Reason.TIMEOUT),
        (timedelta(hours=1), RunPhase.FAILED, Reason.TIMEOUT),
    ],
)
def test_timeout(elapsed: timedelta, phase: RunPhase, reason: str) -> None:
    decision = decide(DAG, ALL, {"a": S, "b": R}, timeout_seconds=60, started=START, now=START + elapsed)
    assert (decision.phase, decision.reason) == (phase, reason)
    if reason == Reason.TIMEOUT:
        assert decision.stop == ["b"]
        assert decision.phases == {"a": S, "b": F, "c": K, "d": K, "x": K}
        assert decision.message == "the run did not finish within 60s"


def test_timeout_needs_a_clock() -> None:
    assert decide(DAG, ALL, {"a": R}, timeout_seconds=1).phase is RunPhase.RUNNING


def test_a_partial_selection() -> None:
    decision = decide(DAG, ["d"], {})
    assert decision.start == ["d"]
    assert decision.phases == {"d": P}
    assert decide(DAG, ["b", "d"], {"b": S, "d": S}).phase is RunPhase.SUCCEEDED


def test_phase_strings_are_accepted() -> None:
    assert decide(DAG, ALL, {"a": "Succeeded", "x": "Running"}).start == ["b", "c"]


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ({}, "0/0"),
        ({"a": P, "b": R}, "0/2"),
        ({"a": S, "b": U, "c": F, "d": K}, "2/4"),
        ({"a": "Succeeded"}, "1/1"),
    ],
)
def test_progress(phases: dict[str, StepPhase | str], expected: str) -> None:
    assert progress(phases) == expected
