"""The PipelineJob reconciler, pass by pass, with a small honest stand-in for the API server: each test
applies (or, to play a crash, withholds) what a pass decided and runs the next pass. One test per way a
tick could run twice or never: operator kill, API outage, suspend/resume, schedule edit, the concurrency
policies and the batch history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchest_operator.jobs.reconcile import (
    ANNOTATION_COMBINATION,
    ANNOTATION_MAX_PARALLEL,
    ANNOTATION_SCHEDULED,
    ANNOTATION_TRIGGER,
    LABEL_BATCH,
    LABEL_JOB,
    JobActions,
    JobInputs,
    combinations,
    reconcile,
)
from orchest_operator.models import PipelineJobSpec
from orchest_operator.runs import timestamp


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


CREATED = utc("2026-01-01 09:30")


@dataclass
class World:
    """The job and its runs as the API server holds them."""

    job: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)

    def decide(self, now: datetime) -> JobActions:
        return reconcile(JobInputs(job=self.job, runs=list(self.runs.values()), now=now))

    def apply(self, actions: JobActions, *, creates: int | None = None, status: bool = True) -> None:
        """Carry out ``actions``; ``creates`` stops after that many creates and ``status=False`` loses the
        status write, as an operator killed mid-pass does."""
        for manifest in actions.create[:creates]:
            self.runs.setdefault(manifest["metadata"]["name"], {**manifest, "status": {}})
        for name in actions.cancel:
            self.runs[name]["spec"]["cancel"] = True
        if creates is not None or not status:
            return
        for name in actions.delete:
            self.runs.pop(name, None)
        self.events += [(e.reason, e.message) for e in actions.events]
        self.job["status"] = actions.status

    def step(self, now: datetime) -> JobActions:
        actions = self.decide(now)
        self.apply(actions)
        return actions

    def finish(self, batch: str | None = None, phase: str = "Succeeded") -> None:
        for run in self.runs.values():
            if batch is None or run["metadata"]["labels"][LABEL_BATCH] == batch:
                run["status"] = {"phase": phase, "startTime": "2026-01-01T00:00:00Z"}
                run["status"]["completionTime"] = "2026-01-01T00:00:30Z"

    def batches(self) -> list[str]:
        return sorted({r["metadata"]["labels"][LABEL_BATCH] for r in self.runs.values()})


def world(**spec: Any) -> World:
    body = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "job-uid",
            "generation": 1,
            "creationTimestamp": timestamp(CREATED),
        },
        "spec": {"pipelineRef": {"name": "p"}, **spec},
    }
    return World(job=body)


def test_without_a_schedule_one_batch_runs_at_creation_and_never_again() -> None:
    w = world(matrix={"alpha": [0.1, 0.2], "seed": [1, 2]}, include=[{"alpha": 0.5}], parameters={"n": 3})
    first = w.step(CREATED)
    assert [m["metadata"]["name"] for m in first.create] == [f"nightly-20260101-093000-{i}" for i in range(5)]
    assert [m["spec"]["parameters"] for m in first.create] == [
        {"n": 3, "alpha": 0.1, "seed": 1},
        {"n": 3, "alpha": 0.1, "seed": 2},
        {"n": 3, "alpha": 0.2, "seed": 1},
        {"n": 3, "alpha": 0.2, "seed": 2},
        {"n": 3, "alpha": 0.5},
    ]
    run = first.create[4]
    assert run["metadata"]["labels"][LABEL_JOB] == "nightly"
    assert run["metadata"]["annotations"][ANNOTATION_SCHEDULED] == "2026-01-01T09:30:00Z"
    assert run["metadata"]["annotations"][ANNOTATION_COMBINATION] == "4"
    assert run["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert run["spec"]["workspace"] == "Isolated" and run["spec"]["priority"] == "Background"
    assert first.wake_at is None
    for later in (CREATED, CREATED + timedelta(days=400)):
        assert w.step(later).create == []
    w.finish()
    status = w.step(CREATED + timedelta(hours=1)).status
    assert status["lastBatchPhase"] == "Succeeded" and status["activeRuns"] == 0
    assert status["conditions"][0]["reason"] == "RunOnce"


def test_combinations_are_the_product_then_the_includes() -> None:
    spec = PipelineJobSpec.model_validate({"pipelineRef": {"name": "p"}, "matrix": {"b": [1, 2], "a": ["x"]}})
    assert combinations(spec) == [{"a": "x", "b": 1}, {"a": "x", "b": 2}]
    only = PipelineJobSpec.model_validate({"pipelineRef": {"name": "p"}, "include": [{"a": 1}]})
    assert combinations(only) == [{"a": 1}]
    assert combinations(PipelineJobSpec.model_validate({"pipelineRef": {"name": "p"}})) == [{}]


def test_a_tick_runs_once_at_its_time() -> None:
    w = world(schedule="@hourly", maxParallelRuns=2, matrix={"a": [1, 2, 3]})
    first = w.step(CREATED)
    assert first.create == [] and first.wake_at == utc("2026-01-01 10:00")
    assert first.status["nextScheduleTime"] == "2026-01-01T10:00:00Z"
    assert w.step(utc("2026-01-01 09:59:59")).create == []
    tick = w.step(utc("2026-01-01 10:00:00"))
    assert [m["metadata"]["name"] for m in tick.create] == [f"nightly-20260101-100000-{i}" for i in range(3)]
    assert tick.create[0]["metadata"]["annotations"][ANNOTATION_MAX_PARALLEL] == "2"
    assert tick.status["lastScheduleTime"] == "2026-01-01T10:00:00Z"
    assert tick.status["active"] == ["20260101-100000"] and tick.status["activeRuns"] == 3
    for again in (utc("2026-01-01 10:00:00"), utc("2026-01-01 10:30")):
        assert w.step(again).create == []


def test_an_operator_killed_after_creating_runs_does_not_run_the_tick_again() -> None:
    w = world(schedule="@hourly", startingDeadlineSeconds=60, matrix={"a": [1, 2, 3]})
    w.step(CREATED)
    w.apply(w.decide(utc("2026-01-01 10:00:05")), status=False)  # runs created, status never written
    assert len(w.runs) == 3
    # it comes back long after the deadline: the tick is known handled from its runs, nothing is missed
    later = w.step(utc("2026-01-01 10:30"))
    assert later.create == [] and later.events == []
    assert later.status["lastScheduleTime"] == "2026-01-01T10:00:00Z"


def test_an_operator_killed_mid_batch_completes_it_once() -> None:
    w = world(schedule="@hourly", startingDeadlineSeconds=60, matrix={"a": [1, 2, 3, 4]})
    w.step(CREATED)
    w.apply(w.decide(utc("2026-01-01 10:00:01")), creates=1)
    resumed = w.step(utc("2026-01-01 10:45"))
    assert [m["metadata"]["name"] for m in resumed.create] == [
        f"nightly-20260101-100000-{i}" for i in (1, 2, 3)
    ]
    assert len(w.runs) == 4 and w.step(utc("2026-01-01 10:46")).create == []


def test_an_api_outage_at_the_tick_runs_it_once_within_the_deadline() -> None:
    w = world(schedule="@hourly", startingDeadlineSeconds=120)
    w.step(CREATED)
    # no pass could reach the API server from 09:59 to 10:01:30
    late = w.step(utc("2026-01-01 10:01:30"))
    assert len(late.create) == 1 and late.events[0].reason == "BatchCreated"
    assert w.step(utc("2026-01-01 10:01:31")).create == []


def test_an_outage_past_the_deadline_misses_the_tick_and_says_so() -> None:
    w = world(schedule="@hourly", startingDeadlineSeconds=60)
    w.step(CREATED)
    late = w.step(utc("2026-01-01 10:05"))
    assert late.create == []
    assert [e.reason for e in late.events] == ["MissedSchedule"]
    assert late.status["missedTicks"] == 1 and late.status["lastScheduleTime"] == "2026-01-01T10:00:00Z"
    assert w.step(utc("2026-01-01 10:06")).events == []  # said once
    assert len(w.step(utc("2026-01-01 11:00")).create) == 1


def test_after_a_long_outage_only_the_latest_tick_runs() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    back = w.step(utc("2026-01-01 13:20"))
    assert [m["metadata"]["annotations"][ANNOTATION_SCHEDULED] for m in back.create] == [
        "2026-01-01T13:00:00Z"
    ]
    missed = [e for e in back.events if e.reason == "MissedSchedule"]
    assert len(missed) == 1 and "3 tick(s)" in missed[0].message
    assert "2026-01-01T10:00:00Z to 2026-01-01T12:00:00Z" in missed[0].message


def test_ticks_during_a_suspension_never_run_and_resuming_starts_nothing() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    w.job["spec"]["suspend"] = True
    suspended = w.step(utc("2026-01-01 09:45"))
    assert suspended.status["conditions"][0]["reason"] == "Suspended"
    assert "nextScheduleTime" not in suspended.status and suspended.wake_at is None
    for moment in (utc("2026-01-01 10:00"), utc("2026-01-01 11:00"), utc("2026-01-01 12:00:10")):
        assert w.step(moment).create == []
    w.job["spec"]["suspend"] = False
    resumed = w.step(utc("2026-01-01 12:00:20"))  # 12:00 fell while suspended
    assert resumed.create == [] and resumed.events == []
    assert resumed.status["nextScheduleTime"] == "2026-01-01T13:00:00Z"
    assert len(w.step(utc("2026-01-01 13:00")).create) == 1


def test_an_edited_schedule_does_not_run_a_tick_of_the_new_one_that_fell_before_the_edit() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    w.finish()
    w.job["spec"]["schedule"] = "*/5 * * * *"
    edited = w.step(utc("2026-01-01 10:17"))  # 10:05, 10:10 and 10:15 are in the past of the new schedule
    assert edited.create == [] and edited.events == []
    assert edited.status["nextScheduleTime"] == "2026-01-01T10:20:00Z"
    assert len(w.step(utc("2026-01-01 10:20")).create) == 1
    # a time zone change is an edit too
    w.job["spec"]["timeZone"] = "Asia/Tokyo"
    assert w.step(utc("2026-01-01 10:29")).create == []
    assert len(w.step(utc("2026-01-01 10:30")).create) == 1


def test_forbid_skips_a_tick_while_a_batch_runs_and_records_it() -> None:
    w = world(schedule="@hourly", concurrencyPolicy="Forbid")
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    skipped = w.step(utc("2026-01-01 11:00"))
    assert skipped.create == [] and [e.reason for e in skipped.events] == ["TickSkipped"]
    record = skipped.status["batches"][0]
    assert (record["id"], record["phase"]) == ("20260101-110000", "Skipped")
    assert "20260101-100000 is still running" in record["message"]
    w.finish()
    # the skipped tick stays skipped once the batch has finished
    assert w.step(utc("2026-01-01 11:30")).create == []
    assert len(w.step(utc("2026-01-01 12:00")).create) == 1


def test_replace_cancels_the_running_batch_and_starts_the_new_one() -> None:
    w = world(schedule="@hourly", concurrencyPolicy="Replace", matrix={"a": [1, 2]})
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    w.runs["nightly-20260101-100000-0"]["status"] = {"phase": "Succeeded"}
    replaced = w.step(utc("2026-01-01 11:00"))
    assert replaced.cancel == ["nightly-20260101-100000-1"]
    assert [m["metadata"]["name"] for m in replaced.create] == [
        "nightly-20260101-110000-0",
        "nightly-20260101-110000-1",
    ]
    assert "BatchReplaced" in [e.reason for e in replaced.events]
    assert w.step(utc("2026-01-01 11:01")).cancel == []  # already asked


def test_allow_runs_batches_side_by_side() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    second = w.step(utc("2026-01-01 11:00"))
    assert len(second.create) == 1 and second.cancel == []
    assert second.status["active"] == ["20260101-100000", "20260101-110000"]


def test_batch_history_limit_deletes_the_oldest_finished_batches() -> None:
    w = world(schedule="@hourly", batchHistoryLimit=2, matrix={"a": [1, 2]})
    w.step(CREATED)
    for hour in (10, 11, 12):
        w.step(utc(f"2026-01-01 {hour}:00"))
        w.finish(f"20260101-{hour}0000", "Failed" if hour == 11 else "Succeeded")
    w.step(utc("2026-01-01 13:00"))  # a fourth batch, running
    assert w.batches() == ["20260101-110000", "20260101-120000", "20260101-130000"]
    status = w.job["status"]
    assert [b["id"] for b in status["batches"]] == ["20260101-130000", "20260101-120000", "20260101-110000"]
    assert status["batches"][2]["phase"] == "Failed" and status["batches"][1]["counts"] == {"Succeeded": 2}
    # the table of combinations is kept for the newest batch only
    assert [row["run"] for row in status["batches"][0]["combinations"]] == [
        "nightly-20260101-130000-0",
        "nightly-20260101-130000-1",
    ]
    assert not any(b.get("combinations") for b in status["batches"][1:])


def test_a_manual_trigger_runs_one_batch_per_annotation_value() -> None:
    w = world(schedule="@daily", suspend=True)
    w.step(CREATED)
    w.job["metadata"]["annotations"] = {ANNOTATION_TRIGGER: "20260101-100000"}
    first = w.step(utc("2026-01-01 10:00:03"))
    assert [m["metadata"]["name"] for m in first.create] == ["nightly-manual-20260101-100000-0"]
    assert first.status["lastTrigger"] == "20260101-100000"
    assert w.step(utc("2026-01-01 10:00:04")).create == []
    w.job["metadata"]["annotations"] = {ANNOTATION_TRIGGER: "20260101-110000"}
    assert len(w.step(utc("2026-01-01 11:00")).create) == 1


def test_runs_of_another_job_of_the_same_name_are_not_its_own() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    for run in w.runs.values():
        run["metadata"]["ownerReferences"][0]["uid"] = "an-older-job"
    status = w.step(utc("2026-01-01 10:10")).status
    assert status["activeRuns"] == 0 and status.get("batches", []) == []


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        ({"schedule": "61 * * * *"}, "InvalidSchedule", "spec.schedule: '61 * * * *': Bad minute"),
        ({"schedule": "@daily", "timeZone": "Mars/Olympus"}, "InvalidSchedule", "spec.timeZone"),
        ({"schedule": "@every 2s"}, "InvalidSchedule", "at least 10s"),
        ({"maxParallelRuns": -1}, "InvalidSpec", "spec.maxParallelRuns"),
    ],
)
def test_bad_specs_get_a_condition_naming_the_field(spec: dict[str, Any], reason: str, fragment: str) -> None:
    w = world(**spec)
    actions = w.step(CREATED + timedelta(days=1))
    assert actions.create == []
    ready = actions.status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", reason)
    assert fragment in ready["message"]


def test_skipped_ticks_never_push_a_batch_that_ran_out_of_the_status() -> None:
    w = world(schedule="@every 10s", concurrencyPolicy="Forbid")
    w.step(CREATED)
    w.step(CREATED + timedelta(seconds=10))
    for n in range(2, 40):
        w.step(CREATED + timedelta(seconds=10 * n))
    batches = w.job["status"]["batches"]
    assert len(batches) <= 20
    assert [b["phase"] for b in batches].count("Skipped") == 3
    assert any(b["phase"] == "Running" for b in batches)
    assert w.job["status"]["lastBatchPhase"] == "Running"


def test_an_unreadable_status_field_does_not_forget_the_ticks_handled() -> None:
    w = world(schedule="@hourly")
    w.step(CREATED)
    w.step(utc("2026-01-01 10:00"))
    w.job["status"]["batches"] = [{"id": "x"}] * 3  # written by hand, or another version
    again = w.step(utc("2026-01-01 10:30"))
    assert again.create == [] and again.status["lastScheduleTime"] == "2026-01-01T10:00:00Z"
