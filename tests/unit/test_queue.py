"""Concurrency policy, queue order and history pruning."""

from __future__ import annotations

from typing import Any

import pytest

from orchest_operator.models import Priority
from orchest_operator.queue import Admission, RunSummary, admit, pipeline_summary, queued, to_prune


def summary(
    name: str,
    created: str,
    *,
    priority: str = "Background",
    started: bool = False,
    finished: bool = False,
    cancel: bool = False,
) -> RunSummary:
    return RunSummary(
        name=name,
        priority=priority,
        created=created,
        started=started,  # type: ignore[arg-type]
        finished=finished,
        cancel=cancel,
    )


def body(
    name: str,
    created: str,
    phase: str | None = None,
    completed: str | None = None,
    started: bool = False,
    priority: str = "Background",
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if completed:
        status["completionTime"] = completed
    if started:
        status["startTime"] = created
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"pipelineRef": {"name": "p"}, "priority": priority},
        "status": status,
    }


def test_allow_never_waits() -> None:
    me = summary("b", "2")
    assert admit(me, [summary("a", "1", started=True)], "Allow").waiting_for is None


def test_queue_waits_for_the_active_run() -> None:
    me = summary("b", "2")
    assert admit(me, [summary("a", "1", started=True)], "Queue").waiting_for == "a"


def test_queue_of_three_mixed_priorities_starts_interactive_first_then_oldest() -> None:
    runs = [summary("bg-old", "1"), summary("bg-new", "3"), summary("inter", "4", priority="Interactive")]
    assert queued(runs) == ["inter", "bg-old", "bg-new"]
    assert admit(runs[2], runs, "Queue").waiting_for is None
    assert admit(runs[0], runs, "Queue").waiting_for == "inter"
    assert admit(runs[1], runs, "Queue").waiting_for == "inter"


def test_finished_and_cancelled_runs_do_not_block() -> None:
    me = summary("c", "3")
    others = [summary("a", "1", started=True, finished=True), summary("b", "2", cancel=True)]
    assert admit(me, others, "Queue").waiting_for is None


@pytest.mark.parametrize(
    ("others", "blocker"),
    [
        ([summary("a", "1", started=True)], "a"),
        ([summary("a", "1")], "a"),
        ([summary("z", "9")], None),
        ([summary("a", "1", started=True, finished=True)], None),
    ],
)
def test_forbid(others: list[RunSummary], blocker: str | None) -> None:
    assert admit(summary("me", "5"), others, "Forbid").forbidden_by == blocker


def test_history_prunes_oldest_finished_runs_beyond_limit() -> None:
    runs = [
        body("r1", "1", "Succeeded", "2026-01-01T00:00:01Z"),
        body("r2", "2", "Failed", "2026-01-01T00:00:02Z"),
        body("r3", "3", "Succeeded", "2026-01-01T00:00:03Z"),
        body("r4", "4", "Running", started=True),
    ]
    assert to_prune(runs, 2) == ["r1"]
    assert to_prune(runs, 0) == ["r1", "r2", "r3"]
    assert to_prune(runs, 10) == []


def test_pipeline_summary() -> None:
    runs = [
        body("r1", "1", "Succeeded", "x", started=True),
        body("r2", "2", "Running", started=True),
        body("r3", "3", "Queued"),
        body("r4", "4", "Queued", priority="Interactive"),
    ]
    assert pipeline_summary(runs) == {"lastRun": "r4", "activeRuns": ["r2"], "queuedRuns": ["r4", "r3"]}


def batch_run(index: int, *, started: bool = False, finished: bool = False, limit: int = 2) -> RunSummary:
    return RunSummary(
        name=f"job-b-{index}",
        priority=Priority.BACKGROUND,
        created="1",
        started=started,
        finished=finished,
        cancel=False,
        batch="b",
        index=index,
        limit=limit,
    )


@pytest.mark.parametrize("policy", ["Allow", "Queue"])
def test_a_batch_runs_at_most_max_parallel_runs_in_combination_order(policy: str) -> None:
    runs = [batch_run(0, started=True), batch_run(1), batch_run(2), batch_run(3)]
    # one slot is free: the lowest waiting combination takes it, the others wait
    assert admit(runs[1], runs, "Allow").waiting_for is None
    assert admit(runs[2], runs, policy).waiting_for == "job-b-0"
    both = [batch_run(0, started=True), batch_run(1, started=True), batch_run(2)]
    assert admit(both[2], both, "Allow").waiting_for == "job-b-0"
    # finished runs free their slot
    done = [batch_run(0, finished=True, started=True), batch_run(1, started=True), batch_run(2)]
    assert admit(done[2], done, "Allow").waiting_for is None


def test_runs_of_other_batches_do_not_take_a_batch_slot() -> None:
    other = RunSummary("x", Priority.BACKGROUND, "0", True, False, False, batch="a", index=0, limit=1)
    me = batch_run(0, limit=1)
    assert admit(me, [other], "Allow").waiting_for is None


def test_runs_of_a_job_are_pruned_by_the_job_not_the_pipeline() -> None:
    runs = [body(f"r{i}", str(i), "Succeeded", str(i)) for i in range(4)]
    for run in runs[:2]:
        run["metadata"]["labels"] = {"orchest.io/pipeline-job": "nightly"}
    assert to_prune(runs, 1) == ["r2"]


def test_summary_reads_the_batch_from_labels_and_annotations() -> None:
    run = body("job-b-3", "1")
    run["metadata"]["labels"] = {"orchest.io/batch": "b"}
    run["metadata"]["annotations"] = {"orchest.io/combination": "3", "orchest.io/max-parallel-runs": "2"}
    found = RunSummary.of(run)
    assert (found.batch, found.index, found.limit) == ("b", 3, 2)


@pytest.mark.parametrize("policy", ["Queue", "Forbid"])
def test_isolated_runs_are_not_held_back_by_the_pipeline_policy(policy: str) -> None:
    shared = summary("a", "1", started=True)
    iso = RunSummary("b", Priority.BACKGROUND, "2", False, False, False, isolated=True)
    assert admit(iso, [shared], policy) == Admission()
    # nor does a running isolated run hold back a shared one
    running_iso = RunSummary("c", Priority.BACKGROUND, "0", True, False, False, isolated=True)
    assert admit(summary("d", "3"), [running_iso], policy) == Admission()


def test_isolated_runs_still_wait_for_their_batch_slot() -> None:
    first = RunSummary(
        "j-0", Priority.BACKGROUND, "1", True, False, False, batch="b", index=0, limit=1, isolated=True
    )
    second = RunSummary(
        "j-1", Priority.BACKGROUND, "1", False, False, False, batch="b", index=1, limit=1, isolated=True
    )
    assert admit(second, [first], "Queue").waiting_for == "j-0"


def test_summary_reads_the_workspace() -> None:
    run = body("r", "1")
    run["spec"]["workspace"] = "Isolated"
    assert RunSummary.of(run).isolated
    assert not RunSummary.of(body("s", "1")).isolated
