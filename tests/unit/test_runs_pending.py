"""The reconciler and a step whose pod does not run: checks, causes, timeouts, deadline, Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchest_operator.builders.job import JobOptions
from orchest_operator.models import PipelineRunStatus
from orchest_operator.naming import job_name
from orchest_operator.observe import JobView, PodView
from orchest_operator.runs import Actions, Inputs, Observed, reconcile
from orchest_operator.stuck import Cause

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
OPTIONS = JobOptions(default_image="runner:1")
PULL = Cause("ImagePullBackOff", 'Back-off pulling image "typo:1"')


def job(step: str, *, ready: int = 0, failed_pods: int = 0) -> JobView:
    return JobView.of(
        {
            "metadata": {
                "name": job_name("r1", step),
                "uid": f"job-{step}",
                "labels": {"orchest.io/step": step},
                "ownerReferences": [
                    {"kind": "PipelineRun", "name": "r1", "uid": "uid-1", "controller": True}
                ],
            },
            "status": {"startTime": "2026-12-01T12:00:00Z", "ready": ready, "failed": failed_pods},
        }
    )


class Run:
    """A run of ``steps`` independent steps (or a chain), reconciled at chosen moments."""

    def __init__(self, steps: list[dict[str, Any]] | None = None, pipeline: dict | None = None, **spec: Any):
        steps = steps or [{"name": "a", "file": "a.py"}, {"name": "b", "file": "b.py", "dependsOn": ["a"]}]
        self.pipeline = {"metadata": {"name": "p"}, "spec": {"volume": {"claimName": "v"}, "steps": steps}}
        self.pipeline["spec"].update(pipeline or {})
        self.run = {
            "apiVersion": "orchest.io/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {"name": "r1", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {"pipelineRef": {"name": "p"}, **spec},
        }
        self.jobs: dict[str, JobView] = {}
        self.pods: list[PodView] = []
        self.causes: dict[str, Cause] = {}
        self.checked: dict[str, datetime] = {}
        self.events: list[tuple[str, str, str]] = []
        self.created: list[dict[str, Any]] = []

    def at(self, seconds: float, **inputs: Any) -> Actions:
        actions = reconcile(
            Inputs(
                run=self.run,
                pipeline=self.pipeline,
                observed=Observed(
                    jobs=dict(self.jobs), pods=list(self.pods), causes=self.causes, checked=self.checked
                ),
                now=T0 + timedelta(seconds=seconds),
                options=OPTIONS,
                **inputs,
            )
        )
        self.run = {**self.run, "status": actions.status}
        for manifest in actions.create:
            step = manifest["metadata"]["labels"]["orchest.io/step"]
            self.created.append(manifest)
            self.jobs[step] = job(step)
        self.events += [(e.type, e.reason, e.message) for e in actions.events]
        return actions

    @property
    def status(self) -> PipelineRunStatus:
        return PipelineRunStatus.model_validate(self.run["status"])

    def condition(self) -> str:
        return self.run["status"]["conditions"][0]["message"]


def test_a_step_is_checked_only_once_it_has_waited_and_then_every_interval() -> None:
    run = Run()
    first = run.at(0)
    assert first.check == {} and first.wake_in == pytest.approx(5.0)
    assert run.at(4.9).check == {}
    due = run.at(5)
    assert due.check == {"a": (job_name("r1", "a"), "job-a")}
    run.checked["a"] = T0 + timedelta(seconds=5)
    later = run.at(6)
    assert later.check == {} and later.wake_in == pytest.approx(9.0)
    assert run.at(15).check == {"a": (job_name("r1", "a"), "job-a")}


def test_a_running_step_is_never_checked_and_its_record_settles() -> None:
    run = Run()
    run.at(0)
    run.jobs["a"] = job("a", ready=1)
    actions = run.at(30)
    assert actions.check == {} and actions.wake_in is None
    assert run.status.steps["a"].running_since == "2026-12-01T12:00:30Z"
    assert run.at(700).status == actions.status, "past the pending timeout, a running step is left alone"


def test_a_cause_lands_in_the_step_the_condition_and_one_warning_per_cause() -> None:
    run = Run()
    run.at(0)
    run.causes["a"] = Cause("ErrImagePull", "rpc error: not found")
    run.at(6)
    step = run.status.steps["a"]
    assert (step.phase.value, step.reason, step.message) == (
        "Running",
        "ErrImagePull",
        "rpc error: not found",
    )
    assert run.condition() == "0/2 steps done; cannot start: a (ErrImagePull)"
    run.causes["a"] = PULL  # the kubelet alternates between the two: the same cause
    run.at(16)
    assert run.status.steps["a"].reason == "ImagePullBackOff"
    run.causes["a"] = Cause("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    run.at(26)
    warnings = [(r, m) for t, r, m in run.events if t == "Warning"]
    assert warnings == [
        ("StepWaiting", "step a cannot start: ErrImagePull: rpc error: not found"),
        (
            "StepWaiting",
            "step a cannot start: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
    ]
    run.jobs["a"] = job("a", ready=1)
    run.at(30)
    step = run.status.steps["a"]
    assert (step.reason, step.message, step.running_since) == (None, None, "2026-12-01T12:00:30Z")
    assert run.condition() == "0/2 steps done"


@pytest.mark.parametrize(
    ("cause", "says"),
    [
        (
            Cause("InvalidImageName", 'couldn\'t parse image name "Bad Image"', permanent=True),
            "InvalidImageName",
        ),
        (
            Cause(
                "FailedCreate", "no PriorityClass with name orchest-background was found; install ...", True
            ),
            "orchest-background",
        ),
    ],
    ids=["invalid-image", "missing-priority-class"],
)
def test_a_cause_that_never_clears_fails_the_step_at_once(cause: Cause, says: str) -> None:
    run = Run()
    run.at(0)
    run.causes["a"] = cause
    actions = run.at(5)
    step = run.status.steps["a"]
    assert (step.phase.value, step.reason) == ("Failed", cause.reason)
    assert step.message.startswith("cannot start: ") and says in step.message
    assert actions.delete == [job_name("r1", "a")]
    assert run.status.phase.value == "Failed" and run.status.steps["b"].phase.value == "Skipped"
    assert [r for t, r, _m in run.events if t == "Warning"] == ["StepFailed", "Failed"]


@pytest.mark.parametrize(
    ("spec", "pipeline", "timeout"),
    [
        ({}, {}, 600),
        ({}, {"pendingTimeoutSeconds": 120}, 120),
        ({"pendingTimeoutSeconds": 30}, {"pendingTimeoutSeconds": 120}, 30),
    ],
    ids=["default", "pipeline", "run-overrides-pipeline"],
)
def test_a_step_that_does_not_run_within_the_pending_timeout_fails_with_the_last_reason(
    spec: dict, pipeline: dict, timeout: int
) -> None:
    run = Run(pipeline=pipeline, **spec)
    run.at(0)
    run.causes["a"] = PULL
    run.checked["a"] = T0 + timedelta(seconds=timeout - 1)
    before = run.at(timeout - 1)
    assert run.status.steps["a"].phase.value == "Running" and before.wake_in == pytest.approx(1.0)
    run.causes = {}  # the last check found nothing new: the last reason seen still stands
    actions = run.at(timeout)
    step = run.status.steps["a"]
    assert (step.phase.value, step.reason) == ("Failed", "ImagePullBackOff")
    assert (
        step.message
        == f'did not start running within {timeout}s: ImagePullBackOff: Back-off pulling image "typo:1"'
    )
    assert actions.delete == [job_name("r1", "a")]


def test_a_pending_timeout_without_any_reason_says_so() -> None:
    run = Run(pendingTimeoutSeconds=10)
    run.at(0)
    run.at(10)
    step = run.status.steps["a"]
    assert (step.phase.value, step.reason, step.message) == (
        "Failed",
        "PendingTimeout",
        "did not start running within 10s",
    )


def test_a_retried_step_has_run_and_is_past_pending() -> None:
    run = Run(pendingTimeoutSeconds=10)
    run.at(0)
    run.jobs["a"] = job("a", failed_pods=1)
    run.at(20)
    assert run.status.steps["a"].phase.value == "Running"


def test_the_step_timeout_counts_from_when_its_pod_runs() -> None:
    steps = [{"name": "a", "file": "a.py", "timeoutSeconds": 60}]
    run = Run(steps=steps, pendingTimeoutSeconds=300)
    run.at(0)
    assert run.created[0]["spec"]["activeDeadlineSeconds"] == 360, "the backstop: timeout + pending timeout"
    run.jobs["a"] = job("a", ready=1)
    actions = run.at(42.3)
    assert actions.patch_jobs == {job_name("r1", "a"): {"spec": {"activeDeadlineSeconds": 103}}}
    assert run.at(50).patch_jobs == {}, "patched once"


def test_a_cancelled_or_finished_run_checks_nothing() -> None:
    run = Run(cancel=True)
    run.at(0)
    assert run.at(10).check == {}


def test_up_to_the_limit_every_step_start_and_success_is_an_event_above_it_the_quarters() -> None:
    steps = [{"name": f"s{i}", "file": "x.py"} for i in range(8)]
    small = Run(steps=steps)
    small.at(0, step_events_limit=8)
    assert [r for _t, r, _m in small.events].count("StepStarted") == 8
    big = Run(steps=steps)
    big.at(0, step_events_limit=7)
    for i in range(8):
        big.pods.append(
            PodView.of(
                {
                    "metadata": {
                        "name": f"s{i}-x",
                        "labels": {
                            "job-name": job_name("r1", f"s{i}"),
                            "controller-uid": f"job-s{i}",
                            "orchest.io/step": f"s{i}",
                        },
                    },
                    "status": {"phase": "Succeeded"},
                }
            )
        )
        if i % 3 == 2:
            big.at(i, step_events_limit=7)
    big.at(9, step_events_limit=7)
    assert [(r, m) for _t, r, m in big.events] == [
        ("Started", "running 8 step(s)"),
        ("Progress", "3/8 steps done"),
        ("Progress", "6/8 steps done"),
        ("Succeeded", "all 8 steps succeeded"),
    ]


@pytest.mark.parametrize("value", [0, -5, "ten", 1.5])
def test_a_pending_timeout_that_is_not_a_positive_whole_number_is_refused(value: Any) -> None:
    from pydantic import ValidationError

    from orchest_operator.crds import all_crds
    from orchest_operator.models import PipelineRunSpec, PipelineSpec

    with pytest.raises(ValidationError, match=r"pendingTimeoutSeconds|pending_timeout_seconds"):
        PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}, "pendingTimeoutSeconds": value})
    steps = [{"name": "a", "file": "a.py"}]
    with pytest.raises(ValidationError, match=r"pendingTimeoutSeconds|pending_timeout_seconds"):
        PipelineSpec.model_validate({"steps": steps, "pendingTimeoutSeconds": value})
    for crd in all_crds().values():  # and the API server refuses it at admission
        field = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        if "runTemplate" in field:  # a PipelineJob's runs get it from their template
            field = field["runTemplate"]["properties"]
        assert field["pendingTimeoutSeconds"]["minimum"] == 1
        assert field["pendingTimeoutSeconds"]["type"] == "integer"


def test_orchest_status_says_why_a_step_waits() -> None:
    from orchest_operator.cli.cluster import _status_text

    run = Run()
    run.at(0)
    run.causes["a"] = PULL
    run.at(6)
    text = _status_text(run.run)
    assert "0/2 steps done; cannot start: a (ImagePullBackOff)" in text
    [line] = [x for x in text.splitlines() if x.startswith("a ")]
    assert line.split()[:2] == ["a", "Running"]
    assert line.endswith('ImagePullBackOff: Back-off pulling image "typo:1"')
