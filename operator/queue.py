"""Which runs of one pipeline may start: the concurrency policy as a pure function.

Runs of a pipeline share one volume, so by default (``Queue``) they run one at a time, Interactive before
Background, then oldest first; ``Forbid`` fails a second run at once; ``Allow`` runs them side by side.
Runs of one PipelineJob batch also wait for a free slot of the job's ``maxParallelRuns``, in the order of
their combinations. A run with an isolated workspace shares no files with the others, so the policy
neither holds it back nor counts it against a shared run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchest_operator.models import ConcurrencyPolicy, Priority, RunPhase, Workspace
from orchest_operator.naming import ANNOTATION_COMBINATION, ANNOTATION_MAX_PARALLEL, LABEL_BATCH, LABEL_JOB


@dataclass(frozen=True)
class RunSummary:
    name: str
    priority: Priority
    created: str
    started: bool
    finished: bool
    cancel: bool
    batch: str | None = None
    """The PipelineJob batch the run belongs to, if any."""
    index: int = 0
    """Its combination's index in the batch: runs of a batch start in this order."""
    limit: int = 0
    """The batch's maxParallelRuns (0: no limit)."""
    isolated: bool = False
    """It works in its own copy of the pipeline's directory (``workspace: Isolated``)."""

    @classmethod
    def of(cls, body: dict[str, Any]) -> RunSummary:
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        try:
            index = int(annotations.get(ANNOTATION_COMBINATION, 0))
            limit = int(annotations.get(ANNOTATION_MAX_PARALLEL, 0))
        except ValueError:
            index = limit = 0
        return cls(
            name=body["metadata"]["name"],
            priority=Priority(spec.get("priority", Priority.BACKGROUND)),
            created=body["metadata"].get("creationTimestamp") or "",
            started=bool(status.get("startTime")),
            finished=RunPhase(status.get("phase", RunPhase.PENDING)).finished,
            cancel=bool(spec.get("cancel")),
            batch=(meta.get("labels") or {}).get(LABEL_BATCH),
            index=index,
            limit=max(limit, 0),
            isolated=spec.get("workspace") == Workspace.ISOLATED,
        )

    @property
    def order(self) -> tuple[int, str, str]:
        return (0 if self.priority == Priority.INTERACTIVE else 1, self.created, self.name)


@dataclass(frozen=True)
class Admission:
    waiting_for: str | None = None
    forbidden_by: str | None = None


def admit(me: RunSummary, runs: Iterable[RunSummary], policy: ConcurrencyPolicy | str) -> Admission:
    """May ``me`` (not started yet) start now, given the other runs of its pipeline?"""
    policy = ConcurrencyPolicy(policy)
    others = [r for r in runs if r.name != me.name and not r.finished and not (r.cancel and not r.started)]
    if me.batch is not None and me.limit:
        batch = sorted((r for r in others if r.batch == me.batch), key=lambda r: r.index)
        running = [r for r in batch if r.started]
        ahead = [r for r in batch if not r.started and r.index < me.index]
        if len(running) + len(ahead) >= me.limit:
            return Admission(waiting_for=(running or ahead)[0].name)
    if policy is ConcurrencyPolicy.ALLOW or me.isolated:
        return Admission()
    others = [r for r in others if not r.isolated]
    active = sorted((r for r in others if r.started), key=lambda r: r.order)
    if policy is ConcurrencyPolicy.FORBID:
        earlier = sorted((r for r in others if r.order < me.order), key=lambda r: r.order)
        blocker = (active or earlier or [None])[0]
        return Admission(forbidden_by=blocker.name if blocker else None)
    if active:
        return Admission(waiting_for=active[0].name)
    ahead = sorted((r for r in others if r.order < me.order), key=lambda r: r.order)
    return Admission(waiting_for=ahead[0].name if ahead else None)


def queued(runs: Iterable[RunSummary]) -> list[str]:
    """Runs waiting to start, in the order they will start."""
    return [
        r.name for r in sorted((r for r in runs if not r.started and not r.finished), key=lambda r: r.order)
    ]


def to_prune(runs: Iterable[dict[str, Any]], limit: int) -> list[str]:
    """Finished runs beyond the pipeline's ``runHistoryLimit``, oldest first. Runs of a PipelineJob are
    not counted: the job's ``batchHistoryLimit`` keeps or deletes them by whole batches."""
    finished = [
        r
        for r in runs
        if RunPhase((r.get("status") or {}).get("phase", RunPhase.PENDING)).finished
        and LABEL_JOB not in (r["metadata"].get("labels") or {})
    ]
    finished.sort(
        key=lambda r: (
            (r.get("status") or {}).get("completionTime") or "",
            r["metadata"].get("creationTimestamp", ""),
        )
    )
    excess = len(finished) - limit
    return [r["metadata"]["name"] for r in finished[:excess]] if excess > 0 else []


def pipeline_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run part of a Pipeline's status: newest run, active runs, queued runs (in start order)."""
    summaries = [RunSummary.of(r) for r in runs]
    newest = max(summaries, key=lambda r: (r.created, r.name), default=None)
    return {
        "lastRun": newest.name if newest else None,
        "activeRuns": sorted(r.name for r in summaries if r.started and not r.finished),
        "queuedRuns": queued(summaries),
    }
