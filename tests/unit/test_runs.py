"""The PipelineRun reconciler as a pure function: each rung of the ladder, without a cluster."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchest_operator.builders.job import JobOptions
from orchest_operator.cache.runplan import PLAN_STEP, encode
from orchest_operator.facts import Reason
from orchest_operator.models import PipelineRunStatus
from orchest_operator.naming import job_name
from orchest_operator.observe import JobView, PodView
from orchest_operator.runs import Actions, Inputs, Observed, lost_steps, reconcile

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
OPTIONS = JobOptions(default_image="runner:1")


def pipeline(**extra: Any) -> dict[str, Any]:
    spec = {
        "volume": {"claimName": "data"},
        "steps": [
            {"name": "a", "file": "a.ipynb"},
            {"name": "b", "file": "b.py", "dependsOn": ["a"]},
            {"name": "c", "file": "c.sh", "dependsOn": ["a"]},
            {"name": "d", "file": "d.py", "dependsOn": ["b", "c"]},
        ],
    }
    spec.update(extra)
    return {"apiVersion": "orchest.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"}, "spec": spec}


def new_run(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "r1", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"pipelineRef": {"name": "p"}, **spec},
    }


def job(
    step: str,
    *,
    complete: bool = False,
    failed: str | None = None,
    failed_pods: int = 0,
    run: str = "r1",
    owner: str = "uid-1",
) -> JobView:
    conditions = []
    if complete:
        conditions.append(
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-24T12:00:05Z"}
        )
    if failed:
        conditions.append(
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": failed}
        )
    return JobView.of(
        {
            "metadata": {
                "name": job_name(run, step),
                "uid": f"job-{run}-{step}",
                "labels": {"orchest.io/step": step},
                "ownerReferences": [{"kind": "PipelineRun", "name": run, "uid": owner, "controller": True}],
            },
            "status": {"conditions": conditions, "failed": failed_pods, "startTime": "2026-11-24T12:00:01Z"},
        }
    )


def pod(step: str, phase: str, message: str | None = None, n: int = 0, run: str = "r1") -> PodView:
    state = {"terminated": {"message": message, "finishedAt": "2026-11-24T12:00:04Z"}} if message else {}
    return PodView.of(
        {
            "metadata": {
                "name": f"r1-{step}-{n}",
                "creationTimestamp": f"2026-11-24T12:00:0{n}Z",
                "labels": {
                    "job-name": job_name(run, step),
                    "controller-uid": f"job-{run}-{step}",
                    "orchest.io/step": step,
                },
            },
            "status": {"phase": phase, "containerStatuses": [{"state": state}]},
        }
    )


class World:
    """Drives the reconciler the way the controller does: feed status back, observe Jobs and pods."""

    def __init__(self, run: dict[str, Any], pipe: dict[str, Any] | None = None) -> None:
        self.run = run
        self.pipeline = pipe if pipe is not None else pipeline()
        self.jobs: dict[str, JobView] = {}
        self.pods: list[PodView] = []
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.now = NOW

    def step(self, **inputs: Any) -> Actions:
        actions = reconcile(
            Inputs(
                run=self.run,
                pipeline=self.pipeline,
                observed=Observed(jobs=dict(self.jobs), pods=list(self.pods)),
                now=self.now,
                options=OPTIONS,
                **inputs,
            )
        )
        if actions.model is not None:  # the stored parts the status reuses are what a full dump gives
            assert actions.status == actions.model.wire()
        self.run = {**self.run, "status": actions.status}
        for manifest in actions.create:
            step = manifest["metadata"]["labels"]["orchest.io/step"]
            self.created.append(step)
            self.jobs[step] = job(step, run=self.name, owner=self.run["metadata"]["uid"])
        self.deleted += actions.delete
        return actions

    @property
    def name(self) -> str:
        return str(self.run["metadata"]["name"])

    def succeed(self, step: str) -> None:
        self.pods.append(pod(step, "Succeeded", run=self.name))

    def fail(self, step: str, message: str | None = None) -> None:
        self.pods.append(pod(step, "Failed", message, run=self.name))
        self.jobs[step] = job(
            step,
            failed="Job has reached the specified backoff limit",
            failed_pods=1,
            run=self.name,
            owner=self.run["metadata"]["uid"],
        )

    @property
    def status(self) -> PipelineRunStatus:
        return PipelineRunStatus.model_validate(self.run["status"])

    def phases(self) -> dict[str, str]:
        return {n: s.phase.value for n, s in self.status.steps.items()}


def test_diamond_runs_in_dag_order_and_succeeds() -> None:
    world = World(new_run())
    first = world.step()
    assert world.created == ["a"]
    assert first.status["phase"] == "Running"
    assert first.status["snapshot"]["selected"] == ["a", "b", "c", "d"]
    events = list(first.events)
    assert [(e.type, e.reason) for e in first.events] == [("Normal", "Started"), ("Normal", "StepStarted")]
    world.succeed("a")
    events += world.step().events
    assert world.created == ["a", "b", "c"]
    world.succeed("b")
    events += world.step().events
    assert world.created == ["a", "b", "c"], "d waits for c"
    world.succeed("c")
    events += world.step().events
    world.succeed("d")
    last = world.step()
    events += last.events
    assert [e.message for e in events] == [
        "running 4 step(s)",
        f"step a started: Job {job_name('r1', 'a')}",
        "step a succeeded",
        f"step b started: Job {job_name('r1', 'b')}",
        f"step c started: Job {job_name('r1', 'c')}",
        "step b succeeded",
        "step c succeeded",
        f"step d started: Job {job_name('r1', 'd')}",
        "step d succeeded",
        "all 4 steps succeeded",
    ]
    assert {e.type for e in events} == {"Normal"}
    assert world.created == ["a", "b", "c", "d"]
    assert last.status["phase"] == "Succeeded"
    assert last.status["progress"] == "4/4"
    cond = last.status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Succeeded", "True", "Succeeded")
    assert last.status["completionTime"] == "2026-11-24T12:00:00Z"
    assert last.events[-1].reason == "Succeeded"


def test_job_complete_condition_also_counts_as_success() -> None:
    world = World(new_run())
    world.step()
    world.jobs["a"] = job("a", complete=True)
    actions = world.step()
    assert world.phases()["a"] == "Succeeded"
    assert world.status.steps["a"].completion_time == "2026-11-24T12:00:05Z"
    assert actions.events[0].message == "step a succeeded in 5s"


def test_failure_sets_step_failure_from_termination_message_and_skips_dependents() -> None:
    world = World(new_run())
    world.step()
    world.succeed("a")
    world.step()
    world.fail("b", json.dumps({"cell": 3, "ename": "ValueError", "evalue": "bad"}))
    actions = world.step()
    status = world.status
    assert status.steps["b"].phase.value == "Failed"
    assert status.steps["b"].failure is not None and status.steps["b"].failure.cell == 3
    assert status.steps["b"].failure.ename == "ValueError"
    assert "backoff limit" in (status.steps["b"].message or "")
    assert status.steps["d"].phase.value == "Skipped"
    assert status.phase.value == "Running", "c is still running; FailFast lets it finish"
    assert actions.create == []
    world.succeed("c")
    done = world.step()
    assert done.status["phase"] == "Failed"
    assert done.status["conditions"][0]["reason"] == Reason.FAILED
    assert "b" in done.status["conditions"][0]["message"]


def test_plain_text_termination_message_is_kept_as_message() -> None:
    world = World(new_run())
    world.step()
    world.fail("a", "Traceback ...\nModuleNotFoundError: no module named x")
    world.step()
    assert "ModuleNotFoundError" in (world.status.steps["a"].message or "")
    assert world.status.steps["a"].failure is None


def test_fail_fast_skips_steps_not_started_and_continue_runs_them() -> None:
    pipe = pipeline(
        steps=[
            {"name": "a", "file": "a.py"},
            {"name": "b", "file": "b.py"},
            {"name": "c", "file": "c.py", "dependsOn": ["b"]},
        ]
    )
    fast = World(new_run(parallelism=1), pipe)
    fast.step()
    fast.fail("a")
    end = fast.step()
    assert end.status["phase"] == "Failed"
    assert fast.phases() == {"a": "Failed", "b": "Skipped", "c": "Skipped"}

    cont = World(new_run(parallelism=1, failurePolicy="Continue"), pipe)
    cont.step()
    cont.fail("a")
    cont.step()
    assert cont.created == ["a", "b"]
    cont.succeed("b")
    cont.step()
    cont.succeed("c")
    end = cont.step()
    assert cont.phases() == {"a": "Failed", "b": "Succeeded", "c": "Succeeded"}
    assert end.status["phase"] == "Failed"


def test_parallelism_limits_running_jobs() -> None:
    steps = [{"name": f"s{i}", "file": "x.py"} for i in range(5)]
    world = World(new_run(parallelism=2), pipeline(steps=steps))
    world.step()
    assert world.created == ["s0", "s1"]
    world.succeed("s0")
    world.step()
    assert world.created == ["s0", "s1", "s2"]


def test_selection_runs_only_chosen_steps() -> None:
    world = World(new_run(selection={"mode": "Downstream", "steps": ["b"]}))
    world.step()
    assert world.created == ["b"], "a is outside the selection; its outputs are taken as they are"
    assert world.status.snapshot is not None and world.status.snapshot.selected == ["b", "d"]


def test_timeout_fails_run_and_deletes_running_jobs() -> None:
    world = World(new_run(timeoutSeconds=60))
    world.step()
    world.now = NOW + timedelta(seconds=61)
    actions = world.step()
    assert actions.status["phase"] == "Failed"
    assert actions.status["conditions"][0]["reason"] == Reason.TIMEOUT
    assert actions.delete == [job_name("r1", "a")]
    assert world.phases() == {"a": "Failed", "b": "Skipped", "c": "Skipped", "d": "Skipped"}


def test_cancel_stops_running_jobs() -> None:
    world = World(new_run())
    world.step()
    world.run["spec"]["cancel"] = True
    actions = world.step()
    assert actions.status["phase"] == "Cancelled"
    assert actions.delete == [job_name("r1", "a")]
    assert set(world.phases().values()) == {"Cancelled"}


def test_cancel_of_queued_run_never_starts_it() -> None:
    world = World(new_run())
    assert world.step(waiting_for="r0").status["phase"] == "Queued"
    world.run["spec"]["cancel"] = True
    actions = world.step(waiting_for="r0")
    assert actions.status["phase"] == "Cancelled"
    assert world.created == []


def test_queued_run_waits_then_starts() -> None:
    world = World(new_run())
    queued = world.step(waiting_for="r0")
    assert queued.status["phase"] == "Queued"
    assert queued.status["conditions"][0]["message"] == "waiting for run r0"
    assert "startTime" not in queued.status
    assert world.created == []
    started = world.step()
    assert started.status["phase"] == "Running"
    assert world.created == ["a"]


def test_forbidden_run_fails_at_once() -> None:
    actions = World(new_run()).step(forbidden_by="r0")
    assert actions.status["phase"] == "Failed"
    assert actions.status["conditions"][0]["reason"] == Reason.CONCURRENCY_FORBIDDEN
    assert "r0" in actions.status["conditions"][0]["message"]


@pytest.mark.parametrize(
    ("pipe", "run_spec", "reason", "needle"),
    [
        (None, {}, Reason.PIPELINE_NOT_FOUND, "pipeline 'p' not found"),
        (pipeline(volume=None), {}, Reason.NO_VOLUME, "no spec.volume"),
        (
            pipeline(steps=[{"name": "a", "file": "a.py", "dependsOn": ["zz"]}]),
            {},
            Reason.INVALID_PIPELINE,
            "unknown step 'zz'",
        ),
        (
            pipeline(
                steps=[
                    {"name": "a", "file": "a.py", "dependsOn": ["b"]},
                    {"name": "b", "file": "b.py", "dependsOn": ["a"]},
                ]
            ),
            {},
            Reason.INVALID_PIPELINE,
            "dependency cycle: a -> b -> a",
        ),
        (
            pipeline(steps=[{"name": "A_b", "file": "a.txt"}]),
            {},
            Reason.INVALID_PIPELINE,
            "spec.steps[0].name: ",
        ),
        (
            pipeline(),
            {"selection": {"mode": "Selected", "steps": ["nope"]}},
            Reason.INVALID_SELECTION,
            "'nope'",
        ),
    ],
)
def test_bad_input_fails_with_reason(
    pipe: dict[str, Any] | None, run_spec: dict[str, Any], reason: str, needle: str
) -> None:
    world = World(new_run(**run_spec), pipe)
    if pipe is None:
        world.pipeline = None  # type: ignore[assignment]
    actions = reconcile(
        Inputs(run=world.run, pipeline=world.pipeline, observed=Observed(), now=NOW, options=OPTIONS)
    )
    cond = actions.status["conditions"][0]
    assert actions.status["phase"] == "Failed"
    assert (cond["status"], cond["reason"]) == ("False", reason)
    assert needle in cond["message"]
    assert actions.create == []
    assert actions.events[0].type == "Warning"


def test_finished_run_is_left_alone() -> None:
    world = World(new_run())
    world.step()
    world.fail("a")
    world.step()
    before = copy.deepcopy(world.run["status"])
    world.pods.append(pod("a", "Succeeded", n=1))
    assert world.step().status == before


def test_job_created_but_status_lost_is_adopted_not_recreated() -> None:
    """Crash between creating a Job and writing status: the next reconcile sees the Job and waits on it."""
    world = World(new_run())
    world.step()
    world.run["status"]["steps"]["a"] = {"phase": "Pending"}
    again = world.step()
    assert again.create == []
    assert world.phases()["a"] == "Running"


def test_vanished_job_fails_the_step_instead_of_running_it_twice() -> None:
    world = World(new_run())
    world.step()
    del world.jobs["a"]
    world.step()
    assert world.phases()["a"] == "Failed"
    assert "disappeared" in (world.status.steps["a"].message or "")
    assert world.created == ["a"]


def test_a_stale_status_never_starts_a_step_whose_job_is_in_flight() -> None:
    """The watch may bring the run as it was before the pass that created a Job wrote its status (an
    edit made meanwhile), while the Job itself is only "in flight" (its ADDED event dropped as an echo,
    none other yet). Deciding from that run must not create the Job a second time."""
    world = World(new_run())
    stale = copy.deepcopy(world.run)  # before the first pass's status
    first = world.step()
    assert world.created == ["a"]
    in_flight = {m["metadata"]["name"] for m in first.create}
    again = reconcile(
        Inputs(
            run=stale,
            pipeline=world.pipeline,
            observed=Observed(in_flight=in_flight),
            now=world.now,
            options=OPTIONS,
        )
    )
    assert again.create == []
    assert again.status["steps"]["a"]["phase"] == "Running"
    assert again.status["steps"]["a"]["jobName"] == job_name("r1", "a")


def test_a_running_step_whose_job_is_gone_is_lost_unless_in_flight() -> None:
    world = World(new_run())
    world.step()
    status = world.status
    assert lost_steps(status, Observed(jobs=dict(world.jobs)), "uid-1") == set()
    assert lost_steps(status, Observed(), "uid-1") == {"a"}
    assert lost_steps(status, Observed(in_flight={job_name("r1", "a")}), "uid-1") == set()
    assert lost_steps(status, Observed(jobs=dict(world.jobs)), "another-uid") == {"a"}


def test_rerun_reuses_succeeded_steps_and_reruns_failed_ones_with_descendants() -> None:
    world = World(new_run())
    world.step()
    world.succeed("a")
    world.step()
    world.succeed("b")
    world.fail("c")
    world.step()
    assert world.status.phase.value == "Failed"
    earlier = world.run

    rerun = World(new_run(rerunOf="r1"), pipeline(steps=[{"name": "changed", "file": "x.py"}]))
    rerun.run["metadata"].update(name="r2", uid="uid-2")
    rerun.step(earlier=earlier)
    assert rerun.phases() == {"a": "Reused", "b": "Reused", "c": "Running", "d": "Pending"}
    assert rerun.created == ["c"], "the earlier run's snapshot is used, not the edited Pipeline"


def test_rerun_of_active_or_missing_run_is_refused() -> None:
    active = World(new_run())
    active.step()
    refused = World(new_run(rerunOf="r1")).step(earlier=active.run)
    assert refused.status["conditions"][0]["reason"] == Reason.RERUN_INVALID
    assert "still Running" in refused.status["conditions"][0]["message"]
    missing = World(new_run(rerunOf="gone")).step(earlier=None)
    assert "does not exist" in missing.status["conditions"][0]["message"]


def test_condition_transition_time_moves_only_on_change() -> None:
    world = World(new_run())
    world.step()
    first = world.status.conditions[0].last_transition_time
    world.now = NOW + timedelta(seconds=5)
    world.succeed("a")
    world.step()
    assert world.status.conditions[0].last_transition_time == first


def test_status_of_a_thousand_steps_stays_small() -> None:
    steps = [
        {"name": f"step-{i:04d}", "file": f"s{i}.py", "dependsOn": [f"step-{i - 1:04d}"] if i else []}
        for i in range(1000)
    ]
    world = World(new_run(), pipeline(steps=steps))
    actions = world.step()
    assert len(json.dumps(actions.status)) < 256 * 1024


def test_a_recreated_run_does_not_adopt_the_old_runs_jobs() -> None:
    """Delete r1 and create it again before the garbage collector removed the old Jobs."""
    world = World(new_run())
    world.run["metadata"]["uid"] = "uid-new"
    world.jobs["a"] = job("a", complete=True, owner="uid-old")
    world.pods.append(pod("a", "Succeeded"))
    first = world.step()
    assert [m["metadata"]["name"] for m in first.create] == [job_name("r1", "a")]
    assert world.phases()["a"] == "Running"


def test_a_job_being_deleted_does_not_count() -> None:
    world = World(new_run())
    world.step()
    deleting = job("a", complete=True)
    world.jobs["a"] = JobView(**{**deleting.__dict__, "deleting": True})
    world.step()
    assert world.phases()["a"] == "Failed", "its Job is going away without having been seen to finish"


@pytest.mark.parametrize(
    ("change", "phase", "reason"),
    [({"cancel": True}, "Cancelled", Reason.CANCELLED), ({"timeoutSeconds": 1}, "Failed", Reason.TIMEOUT)],
)
def test_restart_between_deleting_jobs_and_writing_status_keeps_the_reason(
    change: dict[str, Any], phase: str, reason: str
) -> None:
    """The operator deleted the running Jobs for a cancel or timeout and died before writing status."""
    world = World(new_run())
    world.step()
    world.run["spec"].update(change)
    world.now = NOW + timedelta(seconds=5)
    del world.jobs["a"]
    actions = world.step()
    assert actions.status["phase"] == phase
    assert actions.status["conditions"][0]["reason"] == reason
    assert not any("disappeared" in (s.get("message") or "") for s in actions.status["steps"].values())


def test_a_job_the_api_server_refuses_fails_its_step_with_the_reason() -> None:
    world = World(new_run())
    world.step()
    del world.jobs["a"]
    actions = reconcile(
        Inputs(
            run=world.run,
            pipeline=world.pipeline,
            observed=Observed(
                rejected={"a": 'pods "x" is forbidden: no PriorityClass with name orchest-interactive'}
            ),
            now=NOW,
            options=OPTIONS,
        )
    )
    step = actions.status["steps"]["a"]
    assert (
        step["phase"] == "Failed"
        and "refused its Job" in step["message"]
        and "PriorityClass" in step["message"]
    )
    assert actions.status["phase"] == "Failed"


def test_observed_generation_follows_a_finished_run() -> None:
    world = World(new_run())
    world.step()
    world.fail("a")
    world.step()
    world.run["metadata"]["generation"] = 2
    assert world.step().status["observedGeneration"] == 2


def test_a_failed_step_gets_a_warning_and_the_steps_it_stops_none() -> None:
    world = World(new_run())
    world.step()
    world.fail("a")
    actions = world.step()
    assert [(e.type, e.reason) for e in actions.events] == [("Warning", "StepFailed"), ("Warning", "Failed")]
    assert "step a failed" in actions.events[0].message


def test_the_dag_is_handed_back_and_reused() -> None:
    world = World(new_run())
    first = world.step()
    assert first.dag is not None and first.dag.order == ("a", "b", "c", "d")
    world.succeed("a")
    again = reconcile(
        Inputs(
            run=world.run,
            pipeline=None,
            observed=Observed(jobs=dict(world.jobs), pods=list(world.pods)),
            now=NOW,
            options=OPTIONS,
            dag=first.dag,
        )
    )
    assert again.dag is first.dag
    assert sorted(m["metadata"]["labels"]["orchest.io/step"] for m in again.create) == ["b", "c"]


def test_a_status_handed_back_as_a_model_gives_the_same_pass_and_stays_unchanged() -> None:
    """The controller keeps each pass's status model and hands it back next time instead of parsing."""
    world = World(new_run())
    first = world.step()
    assert first.model is not None and first.model.wire() == first.status
    kept = first.model.model_dump()
    world.succeed("a")

    def next_pass(**given: Any) -> Actions:
        observed = Observed(jobs=dict(world.jobs), pods=list(world.pods))
        return reconcile(
            Inputs(
                run=world.run, pipeline=world.pipeline, observed=observed, now=NOW, options=OPTIONS, **given
            )
        )

    from_dict, from_model = next_pass(), next_pass(status=first.model)
    assert from_model.status == from_dict.status
    assert from_model.status["steps"]["a"]["phase"] == "Succeeded"
    assert [m["metadata"]["name"] for m in from_model.create] == [
        m["metadata"]["name"] for m in from_dict.create
    ]
    assert first.model.model_dump() == kept, "the model handed in is not changed"


def answer(world: World, cached: dict[str, str]) -> None:
    """The planning pod's termination message, as ``orchest step``'s planner writes it."""
    selected = world.status.snapshot.selected  # type: ignore[union-attr]
    world.pods.append(pod(PLAN_STEP, "Succeeded", encode(selected, cached), run=world.name))


def test_a_caching_run_is_planned_first_and_found_steps_cost_no_pod() -> None:
    world = World(new_run(), pipeline(cache=True))
    first = world.step()
    assert world.created == [PLAN_STEP], "no step starts before the plan"
    command = first.create[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == "--termination-message"
    assert world.status.cache_plan is not None and world.status.cache_plan.phase.value == "Running"
    assert world.step().create == []
    answer(world, {"a": "r0", "b": "r0"})
    world.step()
    assert world.phases() == {"a": "Cached", "b": "Cached", "c": "Running", "d": "Pending"}
    assert world.status.steps["a"].cached_from == "r0"
    assert world.status.cache_plan.message == "2 of 4 step(s) found in the cache"  # type: ignore[union-attr]
    assert world.created == [PLAN_STEP, "c"]
    assert world.status.progress == "2/4"


def test_a_step_found_in_the_cache_by_its_own_pod_is_cached_and_counts_as_done() -> None:
    world = World(new_run(), pipeline(cache=True))
    world.step()
    answer(world, {})
    world.step()
    hit = json.dumps({"message": "same inputs as in run r0", "cachedFrom": "r0"})
    world.pods.append(pod("a", "Succeeded", hit))
    world.step()
    a = world.status.steps["a"]
    assert (a.phase.value, a.cached_from, a.message) == ("Cached", "r0", "same inputs as in run r0")
    assert world.created == [PLAN_STEP, "a", "b", "c"], "a Cached step lets its dependents start"
    assert world.status.progress == "1/4"
    for step in "bcd":
        world.pods.append(pod(step, "Succeeded", hit))
        world.step()
    assert world.status.phase.value == "Succeeded" and world.status.progress == "4/4"
    earlier = world.run
    rerun = World(new_run(rerunOf="r1"))
    rerun.run["metadata"].update(name="r2", uid="uid-2")
    rerun.step(earlier=earlier)
    assert set(rerun.phases().values()) == {"Reused"}, "rerunOf counts Cached steps as done"


def test_a_failed_plan_lets_every_step_ask_in_its_own_pod() -> None:
    world = World(new_run(), pipeline(cache=True))
    world.step()
    world.fail(PLAN_STEP, "no space left")
    world.step()
    assert world.created == [PLAN_STEP, "a"]
    plan = world.status.cache_plan
    assert plan is not None and plan.phase.value == "Failed" and "each step asks" in (plan.message or "")


def test_a_run_cancelled_while_planning_deletes_the_planning_job() -> None:
    world = World(new_run(), pipeline(cache=True))
    world.step()
    world.run["spec"]["cancel"] = True
    last = world.step()
    assert last.status["phase"] == "Cancelled" and last.delete == [job_name("r1", PLAN_STEP)]


def test_no_plan_without_cache() -> None:
    world = World(new_run(cache=False), pipeline(cache=True))
    world.step()
    assert world.created == ["a"] and world.status.cache_plan is None


def test_the_run_hands_each_caching_step_its_recipes() -> None:
    def cache_env(actions: Actions) -> dict[str, Any]:
        env = {
            e["name"]: e["value"]
            for e in actions.create[0]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return json.loads(env["ORCHEST_CACHE"]) if "ORCHEST_CACHE" in env else {}

    assert cache_env(World(new_run()).step()) == {}
    world = World(new_run(parameters={"x": 1}), pipeline(cache=True))
    world.step()
    answer(world, {})
    handed = cache_env(world.step())
    assert (handed["pipeline"], handed["step"], handed["lookup"]) == ("p", "a", True)
    assert [r["image"] for r in handed["recipes"]] == ["runner:1"]
    assert list(handed["recipes"][0]["parameters"]) == ["x"]
    assert cache_env(World(new_run(cache=False), pipeline(cache=True)).step())["lookup"] is False


def test_a_rerun_is_planned_over_its_own_selection() -> None:
    world = World(new_run(), pipeline(cache=True))
    world.step()
    answer(world, {})
    world.step()
    world.succeed("a")
    world.step()
    world.succeed("b")
    world.fail("c")
    world.step()
    earlier = world.run
    rerun = World(new_run(rerunOf="r1"), pipeline(cache=True))
    rerun.run["metadata"].update(name="r2", uid="uid-2")
    first = rerun.step(earlier=earlier)
    env = {e["name"]: e["value"] for e in first.create[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["ORCHEST_PLAN"])["selected"] == ["a", "b", "c", "d"]
    answer(rerun, {"c": "r0"})
    rerun.step(earlier=earlier)
    assert rerun.phases() == {"a": "Reused", "b": "Reused", "c": "Cached", "d": "Running"}


def test_a_step_whose_recipes_would_not_fit_an_environment_variable_does_not_cache() -> None:
    steps = [
        {"name": f"s{i}", "file": "x.py", **({"dependsOn": [f"s{i - 1}"]} if i else {})} for i in range(800)
    ]
    spec = {"volume": {"claimName": "data"}, "cache": True, "parameters": {"p": "x" * 50}, "steps": steps}
    pipe = {"apiVersion": "orchest.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "p"}, "spec": spec}
    from orchest_operator.builders.job import step_job
    from orchest_operator.models import PipelineSpec

    model = PipelineSpec.model_validate(pipe["spec"])
    run = new_run()
    first = step_job(
        run=run, spec=model, step_name="s0", parameters={}, priority="Background", options=OPTIONS
    )
    last = step_job(
        run=run, spec=model, step_name="s799", parameters={}, priority="Background", options=OPTIONS
    )
    names = [
        [e["name"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"]] for j in (first, last)
    ]
    assert "ORCHEST_CACHE" in names[0] and "ORCHEST_CACHE" not in names[1]


# --- isolated workspaces ------------------------------------------------------------------------------

WS = "orchest.workspace"


def test_an_isolated_run_makes_its_workspace_before_the_first_step() -> None:
    w = World(new_run(workspace="Isolated", workspaceExclude=["data/*"]))
    first = w.step()
    [copy_job] = first.create
    assert copy_job["metadata"]["labels"]["orchest.io/step"] == WS
    container = copy_job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "runner:1"
    assert container["command"] == [
        "python",
        "-m",
        "orchest_operator.workspace",
        "/project",
        "r1",
        "--exclude",
        "data/*",
    ]
    assert first.status["phase"] == "Running" and first.status["workspace"]["phase"] == "Running"
    assert copy_job["spec"]["activeDeadlineSeconds"] == 600 + 3600, "a copy that cannot start fails in time"
    assert all(s["phase"] == "Pending" for s in first.status["steps"].values())
    assert w.step().create == [], "the copy is still going: no step, no second copy Job"
    w.succeed(WS)
    started = w.step()
    [step_a] = started.create
    assert started.status["workspace"]["phase"] == "Succeeded"
    step = step_a["spec"]["template"]["spec"]["containers"][0]
    assert step["workingDir"] == "/project/.orchest/runs/r1/workspace"
    assert step["command"][-2:] == ["--output-dir", "/project/.orchest/runs/r1"]


def test_a_shared_run_works_in_the_pipeline_directory() -> None:
    w = World(new_run())
    [step_a] = w.step().create
    container = step_a["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == "/project" and "--output-dir" not in container["command"]
    assert "workspace" not in w.run["status"]


def test_a_failed_copy_fails_the_run_and_runs_no_step() -> None:
    w = World(new_run(workspace="Isolated"))
    w.step()
    w.fail(WS, "No space left on device")
    failed = w.step()
    assert failed.create == [] and failed.status["phase"] == "Failed"
    assert failed.status["conditions"][0]["reason"] == "WorkspaceFailed"
    assert "No space left on device" in failed.status["conditions"][0]["message"]
    assert {s["phase"] for s in failed.status["steps"].values()} == {"Skipped"}


def test_cancelling_during_the_copy_stops_it() -> None:
    w = World(new_run(workspace="Isolated"))
    w.step()
    w.run["spec"]["cancel"] = True
    cancelled = w.step()
    assert cancelled.delete == [job_name("r1", WS)]
    assert cancelled.status["phase"] == "Cancelled" and cancelled.create == []


def isolated_failed_run() -> dict[str, Any]:
    world = World(new_run(workspace="Isolated"))
    world.step()
    world.succeed(WS)
    world.step()
    world.fail("a")
    world.step()
    assert world.status.phase.value == "Failed"
    return world.run


def test_an_isolated_rerun_starts_from_the_earlier_runs_workspace() -> None:
    earlier = isolated_failed_run()
    rerun = World(new_run(rerunOf="r1", workspace="Isolated"))
    rerun.run["metadata"].update(name="r2", uid="uid-2")
    [copy_job] = rerun.step(earlier=earlier).create
    command = copy_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-4:] == ["/project", "r2", "--from-run", "r1"]


def test_a_shared_rerun_of_an_isolated_run_is_refused() -> None:
    refused = World(new_run(rerunOf="r1")).step(earlier=isolated_failed_run())
    assert refused.status["conditions"][0]["reason"] == Reason.RERUN_INVALID
    assert "rerun it with workspace: Isolated" in refused.status["conditions"][0]["message"]


def test_an_isolated_run_neither_plans_nor_hands_its_steps_the_cache() -> None:
    w = World(new_run(workspace="Isolated"), pipeline(cache=True))
    w.step()
    w.succeed(WS)
    started = w.step()
    [step_a] = started.create
    env = [e["name"] for e in step_a["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "ORCHEST_CACHE" not in env and w.status.cache_plan is None
