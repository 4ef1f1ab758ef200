"""Cluster objects → what the pages show. Pure: raw API dicts in, small frozen view models out.

The dashboard reads objects as the API server returns them and never validates them with the strict
models: a newer operator may write a phase or a field this version does not know (a ``Cached`` step, a
stuck-step message), and a read-only view should show it rather than fail. Times are compared with an
injected ``now``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchest_operator import naming
from orchest_operator.builders.session import SessionNames
from orchest_operator.dashboard.svg import GraphStep, graph_steps

FINISHED_RUN_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
UNFINISHED_STEP_PHASES = frozenset({"Pending", "Running"})
JOB_KIND = "PipelineJob"
JUPYTER_PORT = 8888
_JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

Obj = Mapping[str, Any]


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one: a field of the wrong type reads as absent."""
    return value if isinstance(value, Mapping) else {}


def text_of(value: Any) -> str | None:
    """``value`` as text, None staying None."""
    return None if value is None else str(value)


def parse_time(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time as the API server writes it; anything else is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def duration_seconds(start: Any, end: Any, now: datetime.datetime) -> float | None:
    """From ``start`` to ``end`` (or ``now`` while unfinished); None without a start."""
    began = parse_time(start)
    if began is None:
        return None
    ended = parse_time(end) or now
    return max((ended - began).total_seconds(), 0.0)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(value: Any) -> str:
    """``2026-12-06 03:04:05Z``: times in UTC, as the API server keeps them."""
    parsed = parse_time(value)
    return parsed.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if parsed else ""


def key_of(obj: Obj) -> str:
    """``namespace/name``: the key of an object in the informers and in the pages."""
    meta = as_map(obj.get("metadata"))
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


# --- runs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One line of the run list."""

    namespace: str
    name: str
    pipeline: str
    phase: str
    progress: str
    created: str
    start: str | None
    completion: str | None
    duration: float | None
    message: str
    job: str | None = None
    job_parameters: str = ""
    parameters: str = ""
    """The run's parameter overrides, ``name=value`` joined."""
    rerun_of: str | None = None
    failure_policy: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_RUN_PHASES


def owner_name(meta: Mapping[str, Any], kind: str) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == kind:
            return text_of(ref.get("name"))
    return None


def _condition_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Succeeded":
            return str(cond.get("message") or "")
    return ""


def run_row(run: Obj, now: datetime.datetime) -> RunRow:
    meta, spec, status = as_map(run.get("metadata")), as_map(run.get("spec")), as_map(run.get("status"))
    job = owner_name(meta, JOB_KIND)
    overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(as_map(spec.get("parameters")).items()))
    return RunRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        pipeline=str(as_map(spec.get("pipelineRef")).get("name") or ""),
        phase=str(status.get("phase") or "Pending"),
        progress=str(status.get("progress") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        start=text_of(status.get("startTime")),
        completion=text_of(status.get("completionTime")),
        duration=duration_seconds(status.get("startTime"), status.get("completionTime"), now),
        message=_condition_message(status),
        job=job,
        job_parameters=overrides if job else "",
        parameters=overrides,
        rerun_of=text_of(spec.get("rerunOf")),
        failure_policy=str(spec.get("failurePolicy") or ""),
    )


def run_rows(runs: Iterable[Obj], now: datetime.datetime) -> list[RunRow]:
    """Every run, newest first (by creation, then name), as Argo and Tekton list them."""
    rows = [run_row(r, now) for r in runs]
    rows.sort(key=lambda r: (r.created, r.namespace, r.name), reverse=True)
    return rows


@dataclass(frozen=True)
class StepRow:
    """One step of a run: its box in the drawing and its line in the step table."""

    name: str
    file: str
    phase: str | None
    """None: not part of this run's selection."""
    attempts: int | None
    start: str | None
    completion: str | None
    duration: float | None
    job: str | None
    pod: str | None
    pod_gone: bool
    """The step ran, but no pod of its Job exists any more (deleted with the Job, or collected)."""
    message: str
    failure_cell: str = ""
    failure_ename: str = ""
    failure_evalue: str = ""
    reason: str = ""
    """Why the step's pod does not run (yet), as the cluster says it (``Unschedulable``, ``ErrImagePull``)."""
    cached_from: str | None = None
    """For a step taken from the cache: the run whose execution was reused."""

    @property
    def running(self) -> bool:
        return self.phase == "Running"


@dataclass(frozen=True)
class RunDetail:
    """A run's page: its summary line, the steps to draw and a row per step."""

    row: RunRow
    steps: list[GraphStep]
    step_rows: list[StepRow]
    selected: int
    resource_version: str
    conditions: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(type, status, reason, message) of each condition."""


class PodIndex:
    """The latest pod of each Job, from the pods the informer holds: a retried step has several."""

    def __init__(self, pods: Iterable[Obj]) -> None:
        latest: dict[tuple[str, str], Obj] = {}
        for pod in pods:
            meta = as_map(pod.get("metadata"))
            labels = as_map(meta.get("labels"))
            job = next((labels[k] for k in _JOB_NAME_LABELS if k in labels), None)
            if job is None:
                continue
            key = (str(meta.get("namespace") or ""), str(job))
            current = latest.get(key)
            if current is None or _created(pod) >= _created(current):
                latest[key] = pod
        self._latest = latest

    def pod_of(self, namespace: str, job: str | None) -> Obj | None:
        return None if job is None else self._latest.get((namespace, job))


def pod_summary(pod: Obj) -> dict[str, Any]:
    """What the dashboard keeps of a step's pod: names, the labels that tie it to its run and Job, and its
    phase (a pod object is ~5 KB; a cluster-wide dashboard holds every step pod)."""
    meta, labels = as_map(pod.get("metadata")), as_map(as_map(pod.get("metadata")).get("labels"))
    kept = (naming.LABEL_RUN, naming.LABEL_STEP, *_JOB_NAME_LABELS)
    return {
        "metadata": {
            **{
                k: meta[k] for k in ("name", "namespace", "creationTimestamp", "resourceVersion") if k in meta
            },
            "labels": {k: labels[k] for k in kept if k in labels},
        },
        "status": {"phase": as_map(pod.get("status")).get("phase")},
    }


def _created(obj: Obj) -> tuple[str, str]:
    meta = as_map(obj.get("metadata"))
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def pipeline_steps_of_run(run: Obj) -> list[GraphStep]:
    """What the run executes: the snapshot the operator froze, else the steps named in its status."""
    status = as_map(run.get("status"))
    snapshot = as_map(as_map(status.get("snapshot")).get("pipeline"))
    steps = graph_steps(snapshot.get("steps") or [])
    if steps:
        return steps
    return [GraphStep(name=str(n), file="") for n in as_map(status.get("steps"))]


def step_row(
    name: str,
    file: str,
    state: Mapping[str, Any] | None,
    namespace: str,
    pods: PodIndex,
    now: datetime.datetime,
    *,
    pods_known: bool = True,
) -> StepRow:
    """A step's row; ``pods_known`` is False until the pod informer has listed once (nothing is 'gone'
    before the dashboard has looked)."""
    if state is None:
        return StepRow(name, file, None, None, None, None, None, None, None, False, "")
    phase = str(state.get("phase") or "Pending")
    job = text_of(state.get("jobName"))
    pod = pods.pod_of(namespace, job)
    failure = as_map(state.get("failure"))
    attempts = state.get("attempts")
    ran = job is not None and phase not in UNFINISHED_STEP_PHASES  # a running step's pod may be on its way
    return StepRow(
        name=name,
        file=file,
        phase=phase,
        attempts=attempts if isinstance(attempts, int) else None,
        start=text_of(state.get("startTime")),
        completion=text_of(state.get("completionTime")),
        duration=duration_seconds(
            state.get("startTime"),
            state.get("completionTime") if phase not in UNFINISHED_STEP_PHASES else None,
            now,
        ),
        job=job,
        pod=text_of(as_map(pod.get("metadata")).get("name")) if pod else None,
        pod_gone=pod is None and ran and pods_known,
        message=str(state.get("message") or ""),
        failure_cell="" if failure.get("cell") is None else str(failure.get("cell")),
        failure_ename=str(failure.get("ename") or ""),
        failure_evalue=str(failure.get("evalue") or ""),
        reason=str(state.get("reason") or ""),
        cached_from=text_of(state.get("cachedFrom")),
    )


def run_detail(run: Obj, pods: PodIndex, now: datetime.datetime, *, pods_known: bool = True) -> RunDetail:
    row = run_row(run, now)
    status = as_map(run.get("status"))
    states = as_map(status.get("steps"))
    steps = pipeline_steps_of_run(run)
    selected = as_map(status.get("snapshot")).get("selected")
    rows = [
        step_row(
            s.name,
            s.file,
            as_map(states[s.name]) if s.name in states else None,
            row.namespace,
            pods,
            now,
            pods_known=pods_known,
        )
        for s in steps
    ]
    conditions = [
        (
            str(c.get("type") or ""),
            str(c.get("status") or ""),
            str(c.get("reason") or ""),
            str(c.get("message") or ""),
        )
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    ]
    return RunDetail(
        row=row,
        steps=steps,
        step_rows=rows,
        selected=len(selected) if isinstance(selected, list) else sum(1 for r in rows if r.phase is not None),
        resource_version=str(as_map(run.get("metadata")).get("resourceVersion") or ""),
        conditions=conditions,
    )


def step_log_target(
    run: Obj, step: str, pods: PodIndex, *, pods_known: bool = True
) -> tuple[str | None, str]:
    """(pod, why not): the pod whose log to show for ``step``, or a plain sentence saying why none."""
    states = as_map(as_map(run.get("status")).get("steps"))
    if step not in states:
        return None, f"Step {step} is not part of this run."
    state = as_map(states[step])
    phase = str(state.get("phase") or "Pending")
    job = text_of(state.get("jobName"))
    if job is None:
        if phase == "Reused":
            return None, f"Step {step} was reused from an earlier run: it has no pod in this run."
        if state.get("cachedFrom"):
            return (
                None,
                f"Step {step} was taken from the cache (run {state['cachedFrom']}): it has no pod here.",
            )
        if phase == "Pending":
            return None, f"Step {step} has not started yet."
        return None, f"Step {step} never got a Job ({phase}): there is no pod and no log."
    pod = pods.pod_of(str(as_map(run.get("metadata")).get("namespace") or ""), job)
    if pod is None:
        if not pods_known:
            return None, "The dashboard is still listing pods; try again in a moment."
        if phase in UNFINISHED_STEP_PHASES:
            return None, f"Step {step}'s pod has not been created yet; open its log again in a moment."
        return None, (
            f"The pod of step {step} (Job {job}) is gone: it was deleted with its Job or garbage-collected, "
            "so its log is no longer available."
        )
    return str(as_map(pod.get("metadata")).get("name")), ""


# --- pipelines ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineStepRow:
    name: str
    file: str
    depends_on: str
    image: str
    retries: str
    timeout: str
    parameters: str


@dataclass(frozen=True)
class PipelineView:
    """A Pipeline's line in the list and its page."""

    namespace: str
    name: str
    step_count: int
    parameters: list[tuple[str, str]]
    steps: list[PipelineStepRow]
    graph: list[GraphStep]
    session_enabled: bool
    session_phase: str
    session_message: str
    last_run: str
    active_runs: list[str]
    queued_runs: list[str]
    port_forward: str
    token_command: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parameter_pairs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v)) for k, v in sorted(values.items())]


def pipeline_view(pipeline: Obj) -> PipelineView:
    meta, spec, status = (as_map(pipeline.get(k)) for k in ("metadata", "spec", "status"))
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    raw_steps = [s for s in spec.get("steps") or [] if isinstance(s, Mapping)]
    session_spec, session = as_map(spec.get("session")), as_map(status.get("session"))
    names = SessionNames.of(name) if name else None
    enabled = bool(session_spec.get("enabled"))
    return PipelineView(
        namespace=namespace,
        name=name,
        step_count=len(raw_steps),
        parameters=parameter_pairs(as_map(spec.get("parameters"))),
        steps=[
            PipelineStepRow(
                name=str(s.get("name") or ""),
                file=str(s.get("file") or ""),
                depends_on=", ".join(str(d) for d in s.get("dependsOn") or []),
                image=str(s.get("image") or spec.get("image") or ""),
                retries=str(s.get("retries") or 0),
                timeout=f"{s['timeoutSeconds']}s" if s.get("timeoutSeconds") else "",
                parameters=", ".join(f"{k}={v}" for k, v in parameter_pairs(as_map(s.get("parameters")))),
            )
            for s in raw_steps
        ],
        graph=graph_steps(raw_steps),
        session_enabled=enabled,
        session_phase=str(session.get("phase") or ("Starting" if enabled else "Stopped")),
        session_message=" ".join(str(session[k]) for k in ("reason", "message") if session.get(k)),
        last_run=str(status.get("lastRun") or ""),
        active_runs=[str(r) for r in status.get("activeRuns") or []],
        queued_runs=[str(r) for r in status.get("queuedRuns") or []],
        port_forward=(
            f"kubectl -n {namespace} port-forward svc/{names.server} {JUPYTER_PORT}"
            if names and enabled
            else ""
        ),
        token_command=(
            f"kubectl -n {namespace} get secret {session.get('tokenSecret') or names.token} "
            "-o jsonpath='{.data.token}' | base64 -d"
            if names and enabled
            else ""
        ),
    )


def pipeline_views(pipelines: Iterable[Obj]) -> list[PipelineView]:
    return sorted((pipeline_view(p) for p in pipelines), key=lambda v: (v.namespace, v.name))


def runs_of(runs: Iterable[Obj], namespace: str, pipeline: str) -> list[Obj]:
    return [
        r
        for r in runs
        if as_map(r.get("metadata")).get("namespace") == namespace
        and as_map(as_map(r.get("spec")).get("pipelineRef")).get("name") == pipeline
    ]
