"""PipelineJobs → what their pages show: the batches, and a sweep's combinations with one column per swept
parameter (from the runs the job's controller labels with their batch and combination). Pure, and as
tolerant as ``views``; shown only where that kind is installed."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchest_operator.dashboard.views import (
    JOB_KIND,
    Obj,
    as_map,
    duration_seconds,
    owner_name,
    parameter_pairs,
    text_of,
)
from orchest_operator.naming import ANNOTATION_COMBINATION, LABEL_BATCH


@dataclass(frozen=True)
class JobRow:
    """A PipelineJob's line in the list."""

    namespace: str
    name: str
    pipeline: str
    schedule: str
    suspended: bool
    last_schedule: str | None
    next_schedule: str | None
    active_runs: int
    last_batch: str
    last_batch_phase: str
    combinations: int
    problem: str
    """A Ready=False condition's message: the spec cannot be scheduled."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class BatchRow:
    id: str
    trigger: str
    scheduled: str | None
    phase: str
    runs: int
    counts: str
    completion: str | None
    message: str


@dataclass(frozen=True)
class CombinationRow:
    """One combination of a sweep: its values (one per swept parameter), its run and how it went."""

    index: int
    run: str
    phase: str | None
    duration: float | None
    values: list[tuple[str, Any]]
    """(shown text, sort value) per swept parameter."""


@dataclass(frozen=True)
class JobDetail:
    row: JobRow
    parameters: list[tuple[str, str]]
    swept: list[str]
    batches: list[BatchRow]
    batch: str
    """The batch whose combinations are shown (the newest unless asked)."""
    combinations: list[CombinationRow]


def swept_parameters(spec: Mapping[str, Any]) -> list[str]:
    """The matrix's parameters, then any other parameter an ``include`` entry sets."""
    names = [str(k) for k in as_map(spec.get("matrix"))]
    for entry in spec.get("include") or []:
        for key in as_map(entry):
            if str(key) not in names:
                names.append(str(key))
    return names


def _combination_count(spec: Mapping[str, Any]) -> int:
    count = 1
    matrix = as_map(spec.get("matrix"))
    for values in matrix.values():
        count *= len(values) if isinstance(values, list) else 1
    return (count if matrix else 0) + len(spec.get("include") or []) or 1


def job_row(job: Obj) -> JobRow:
    meta, spec, status = (as_map(job.get(k)) for k in ("metadata", "spec", "status"))
    problem = next(
        (
            str(c.get("message") or c.get("reason") or "")
            for c in status.get("conditions") or []
            if isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "False"
        ),
        "",
    )
    active = status.get("activeRuns")
    return JobRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        pipeline=str(as_map(spec.get("pipelineRef")).get("name") or ""),
        schedule=str(spec.get("schedule") or "once"),
        suspended=bool(spec.get("suspend")),
        last_schedule=text_of(status.get("lastScheduleTime")),
        next_schedule=text_of(status.get("nextScheduleTime")),
        active_runs=active if isinstance(active, int) else 0,
        last_batch=str(status.get("lastBatch") or ""),
        last_batch_phase=str(status.get("lastBatchPhase") or ""),
        combinations=_combination_count(spec),
        problem=problem,
    )


def job_rows(jobs: Iterable[Obj]) -> list[JobRow]:
    return sorted((job_row(j) for j in jobs), key=lambda r: (r.namespace, r.name))


def _sort_value(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else json.dumps(value)


def job_detail(job: Obj, runs: Iterable[Obj], now: datetime.datetime, batch: str | None = None) -> JobDetail:
    """The job's batches and, for one batch, a row per combination: from the runs themselves (their
    parameters and phase), falling back to what the job's status recorded for runs already deleted."""
    row = job_row(job)
    spec, status = as_map(job.get("spec")), as_map(job.get("status"))
    swept = swept_parameters(spec)
    batches = []
    for b in status.get("batches") or []:
        if not isinstance(b, Mapping):
            continue
        counts = as_map(b.get("counts"))
        batches.append(
            BatchRow(
                id=str(b.get("id") or ""),
                trigger=str(b.get("trigger") or ""),
                scheduled=text_of(b.get("scheduledTime")),
                phase=str(b.get("phase") or ""),
                runs=int(b.get("runs") or 0),
                counts=", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
                completion=text_of(b.get("completionTime")),
                message=str(b.get("message") or ""),
            )
        )
    chosen = batch or row.last_batch or (batches[0].id if batches else "")
    combos: dict[int, CombinationRow] = {}
    for run in runs:
        meta = as_map(run.get("metadata"))
        labels, annotations = as_map(meta.get("labels")), as_map(meta.get("annotations"))
        if meta.get("namespace") != row.namespace or owner_name(meta, JOB_KIND) != row.name:
            continue
        if labels.get(LABEL_BATCH) != chosen:
            continue
        try:
            index = int(annotations.get(ANNOTATION_COMBINATION, "0"))
        except ValueError:
            continue
        run_status, parameters = as_map(run.get("status")), as_map(as_map(run.get("spec")).get("parameters"))
        combos[index] = CombinationRow(
            index=index,
            run=str(meta.get("name") or ""),
            phase=text_of(run_status.get("phase")) or "Pending",
            duration=duration_seconds(run_status.get("startTime"), run_status.get("completionTime"), now),
            values=[
                (json.dumps(parameters[k]), _sort_value(parameters[k])) if k in parameters else ("", "")
                for k in swept
            ],
        )
    recorded = next(
        (b for b in status.get("batches") or [] if isinstance(b, Mapping) and b.get("id") == chosen), {}
    )
    for c in as_map(recorded).get("combinations") or []:
        if isinstance(c, Mapping) and isinstance(c.get("index"), int) and c["index"] not in combos:
            seconds = c.get("durationSeconds")
            combos[c["index"]] = CombinationRow(
                index=c["index"],
                run=str(c.get("run") or ""),
                phase=text_of(c.get("phase")),
                duration=float(seconds) if isinstance(seconds, int | float) else None,
                values=[("", "") for _ in swept],
            )
    return JobDetail(
        row=row,
        parameters=parameter_pairs(as_map(spec.get("parameters"))),
        swept=swept,
        batches=batches,
        batch=chosen,
        combinations=[combos[i] for i in sorted(combos)],
    )
