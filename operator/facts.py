"""Fold what a run asked for and what its steps did into what the run is and what to do next.

Pure and clock-injected, after Tekton's "pipeline run facts": the operator and the local runner observe
their steps their own way (Jobs and pods, or local processes), hand the step phases here, and carry out the
returned ``Decision``. Nothing here knows about Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from orchest_operator.dag import Dag
from orchest_operator.models import ConditionStatus, FailurePolicy, RunPhase, StepPhase, step_phase


class Reason:
    """Reasons of the ``Succeeded`` condition; typed constants so tests and docs share one spelling."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMEOUT = "Timeout"
    CANCELLED = "Cancelled"
    PIPELINE_NOT_FOUND = "PipelineNotFound"
    INVALID_PIPELINE = "InvalidPipeline"
    INVALID_SELECTION = "InvalidSelection"
    NO_VOLUME = "VolumeMissing"
    CONCURRENCY_FORBIDDEN = "ConcurrencyForbidden"
    RERUN_INVALID = "InvalidRerun"
    WORKSPACE_FAILED = "WorkspaceFailed"


@dataclass(frozen=True)
class Decision:
    phase: RunPhase
    reason: str
    message: str
    start: list[str] = field(default_factory=list)
    """Pending steps to start now, in topological order."""
    stop: list[str] = field(default_factory=list)
    """Running steps to stop (cancel or timeout)."""
    phases: dict[str, StepPhase] = field(default_factory=dict)
    """Every selected step's phase after this decision (steps to start are still Pending)."""

    @property
    def condition_status(self) -> ConditionStatus:
        if self.phase is RunPhase.SUCCEEDED:
            return ConditionStatus.TRUE
        if self.phase.finished:
            return ConditionStatus.FALSE
        return ConditionStatus.UNKNOWN

    @property
    def finished(self) -> bool:
        return self.phase.finished


def progress(phases: Mapping[str, StepPhase | str]) -> str:
    done = sum(1 for p in phases.values() if step_phase(p).ok)
    return f"{done}/{len(phases)}"


def decide(
    dag: Dag,
    selected: Sequence[str],
    observed: Mapping[str, StepPhase | str],
    *,
    parallelism: int = 0,
    failure_policy: FailurePolicy | str = FailurePolicy.FAIL_FAST,
    cancel: bool = False,
    timeout_seconds: int | None = None,
    started: datetime | None = None,
    now: datetime | None = None,
) -> Decision:
    """What the run is now and what to do next, given the phases observed for its steps.

    ``observed`` may omit steps (they are Pending). ``Reused`` steps count as succeeded.
    """
    phases = {n: step_phase(observed.get(n, StepPhase.PENDING)) for n in selected}

    def unfinished(to: StepPhase, stopping: StepPhase) -> tuple[list[str], dict[str, StepPhase]]:
        stop = [n for n, p in phases.items() if p is StepPhase.RUNNING]
        after = {
            n: (stopping if p is StepPhase.RUNNING else to if p is StepPhase.PENDING else p)
            for n, p in phases.items()
        }
        return stop, after

    running_any = any(p is StepPhase.RUNNING for p in phases.values())
    all_finished = all(p.finished for p in phases.values())

    if cancel and not all_finished:
        stop, after = unfinished(StepPhase.CANCELLED, StepPhase.CANCELLED)
        return Decision(
            RunPhase.CANCELLED, Reason.CANCELLED, "the run was cancelled", stop=stop, phases=after
        )

    if (
        timeout_seconds is not None
        and started is not None
        and now is not None
        and not all_finished
        and (now - started).total_seconds() >= timeout_seconds
    ):
        stop, after = unfinished(StepPhase.SKIPPED, StepPhase.FAILED)
        return Decision(
            RunPhase.FAILED,
            Reason.TIMEOUT,
            f"the run did not finish within {timeout_seconds}s",
            stop=stop,
            phases=after,
        )

    for name in dag.blocked(selected, phases):
        phases[name] = StepPhase.SKIPPED
    failed = [n for n, p in phases.items() if p in (StepPhase.FAILED, StepPhase.CANCELLED)]
    if failed and FailurePolicy(failure_policy) is FailurePolicy.FAIL_FAST:
        phases = {n: StepPhase.SKIPPED if p is StepPhase.PENDING else p for n, p in phases.items()}

    start = dag.ready(selected, phases, parallelism=parallelism, failure_policy=failure_policy)
    if start or running_any or not all(p.finished for p in phases.values()):
        return Decision(
            RunPhase.RUNNING, Reason.RUNNING, f"{progress(phases)} steps done", start=start, phases=phases
        )
    if failed:
        names = ", ".join(failed)
        return Decision(RunPhase.FAILED, Reason.FAILED, f"step(s) failed: {names}", phases=phases)
    return Decision(RunPhase.SUCCEEDED, Reason.SUCCEEDED, f"all {len(phases)} steps succeeded", phases=phases)
