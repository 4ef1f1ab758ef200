"""Pydantic models of the orchest custom resources.

These models are the single source of truth: the CRDs under ``manifests/crds`` are generated from them
(``orchest crds``), the CLI validates pipeline files with them, and the operator parses objects it reads
from the API server with them. Field names are camelCase on the wire and snake_case in Python.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GROUP = "orchest.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
STEP_FILE = r"^[^/].*\.(ipynb|py|sh)$"
GLOB_RULE = {
    "rule": "self.all(g, !g.startsWith('/') && !g.matches('(^|/)[.][.](/|$)'))",
    "message": "a glob is relative to the pipeline directory and cannot leave it ('/' first or '..')",
}
QUANTITY = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"

StepName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=DNS1123_LABEL)]
Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class Model(BaseModel):
    """Base of every wire model: camelCase aliases, unknown fields rejected (they are typos)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: aliases, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _inside_pipeline(glob: str) -> str:
    """The admission rule ``GLOB_RULE`` in Python, for pipeline files that never reach an API server."""
    if glob.startswith("/") or ".." in glob.split("/"):
        raise ValueError(f"{glob!r} leaves the pipeline directory: globs are relative and cannot use '..'")
    return glob


Glob = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_inside_pipeline)]
Globs = Annotated[
    list[Glob], Field(max_length=100, json_schema_extra={"x-kubernetes-validations": [GLOB_RULE]})
]


FreeMap = Annotated[
    dict[str, Any],
    Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
]


LIST_MAP_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class EnvVar(Model):
    """An environment variable of a step's container."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME)]
    """The variable's name, as a process sees it."""
    value: str = ""
    """The variable's value; empty when unset."""


class Resources(Model):
    """Kubernetes requests and limits; extended resources such as ``nvidia.com/gpu`` are allowed."""

    requests: dict[str, Quantity] | None = None
    """What the step's pod asks the scheduler for, e.g. `cpu: 500m`, `memory: 1Gi`."""
    limits: dict[str, Quantity] | None = None
    """The most the step's container may use, e.g. `memory: 2Gi`, `nvidia.com/gpu: 1`."""


class Volume(Model):
    """The PersistentVolumeClaim that holds the pipeline directory."""

    claim_name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)]
    """The PersistentVolumeClaim that holds the pipeline directory, in the Pipeline's namespace."""
    sub_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^/]")] | None = None
    """A directory inside the claim to mount instead of its root."""
    mount_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^/")] = "/project"
    """Where steps, kernels and jupyter-server see the pipeline directory; steps run in it."""


class Step(Model):
    """One notebook or script of the pipeline, run as one Kubernetes Job."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!(self.name in self.dependsOn)", "message": "a step cannot depend on itself"}
            ]
        }
    )

    name: StepName
    """The step's name: unique in the pipeline, a DNS label, at most 40 characters."""
    file: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=STEP_FILE)]
    """The notebook (.ipynb, run by papermill), Python (.py) or shell (.sh) file to run, relative to the
    pipeline directory."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    """The container image the step runs in; defaults to the pipeline's `image`. It must have orchest
    installed (build it FROM the step runner image)."""
    parameters: FreeMap | None = None
    """Parameters of this step; they override the pipeline's and are overridden by a run's."""
    env: Annotated[list[EnvVar], Field(json_schema_extra=LIST_MAP_BY_NAME)] | None = None
    """Environment variables of this step; they override the pipeline's of the same name."""
    resources: Resources | None = None
    """Requests and limits of this step's container; they replace the pipeline's."""
    depends_on: Annotated[list[StepName], Field(max_length=1000)] = []
    """Steps that must succeed before this one starts."""
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    """How many times a failed step is tried again (the Job's backoffLimit)."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """How long the step may run, once its pod runs, before it fails; unset means no limit."""
    cache: bool | None = None
    """Reuse an earlier successful execution when nothing it depends on changed; defaults to the
    pipeline's `cache`."""
    outputs: Globs | None = None
    """Globs of the files this step writes, relative to the pipeline directory: a cached step is reused
    only while they are unchanged, and its dependents' cache keys use their content."""
    inputs: Globs | None = None
    """Globs of files this step reads that no step writes (raw data): their content is in its cache key."""


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    QUEUE = "Queue"
    FORBID = "Forbid"


class ProcessProxy(StrEnum):
    KUBERNETES = "Kubernetes"
    DOCKER_SWARM = "DockerSwarm"
    DOCKER = "Docker"


class Kernel(Model):
    """A kernel the interactive session offers, run as its own pod (or container)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=DNS1123_LABEL)]
    """The kernelspec's name, a DNS label."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    """The kernel's image, which must contain Enterprise Gateway's kernel bootstrap; defaults to the
    pipeline's image."""
    display_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    """The name JupyterLab shows for this kernel."""
    language: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "python"
    """The kernel's language, as JupyterLab shows it."""


class Session(Model):
    """An interactive session: Jupyter Enterprise Gateway plus a jupyter-server on the pipeline's volume."""

    enabled: bool = False
    """Whether the operator runs an interactive session (Enterprise Gateway and jupyter-server) for the
    pipeline; it needs `volume`."""
    kernels: Annotated[list[Kernel], Field(max_length=20, json_schema_extra=LIST_MAP_BY_NAME)] = []
    """The kernels the session offers; default: one `python` kernel on the pipeline's image."""
    process_proxy: ProcessProxy = ProcessProxy.KUBERNETES
    """Where kernels run: as pods (`Kubernetes`) or as containers on a Docker (Swarm) host."""
    docker_host_secret: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)] | None
    ) = None
    """For `Docker`/`DockerSwarm`: a Secret with a `DOCKER_HOST` key (plus `ca.pem`, `cert.pem`,
    `key.pem` for TLS)."""


class PipelineSpec(Model):
    """A DAG of notebook and script steps that share one directory."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    """The default image of the steps and kernels."""
    volume: Volume | None = None
    """The PersistentVolumeClaim that holds the pipeline directory, shared by every step; needed on a
    cluster."""
    parameters: FreeMap = {}
    """Parameters of every step; a step's own and a run's override them."""
    env: Annotated[list[EnvVar], Field(json_schema_extra=LIST_MAP_BY_NAME)] = []
    """Environment variables of every step."""
    resources: Resources | None = None
    """Default requests and limits of every step."""
    steps: Annotated[list[Step], Field(min_length=1, max_length=1000, json_schema_extra=LIST_MAP_BY_NAME)]
    """The steps, a DAG through their `dependsOn`."""
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.QUEUE
    """What happens to a run submitted while another run of this pipeline is active: `Queue` it
    (default), `Allow` both, or `Forbid` (fail) the new one."""
    run_history_limit: Annotated[int, Field(ge=0, le=1000)] = 10
    """How many finished runs of this pipeline are kept; older ones are deleted."""
    pending_timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """The default of its runs' `pendingTimeoutSeconds`: how long a step may wait for its pod to run
    (unschedulable, image pull, refused pod) before it fails; unset means 600."""
    session: Session = Session()
    """The pipeline's interactive session."""
    cache: bool = False
    """Whether steps reuse earlier executions when nothing they depend on changed (each step's `cache`
    overrides it). Off by default: a step with side effects outside its directory must not be skipped by
    surprise."""

    @functools.cached_property
    def _by_name(self) -> tuple[list[Step], dict[str, Step]]:
        # Not a field: pydantic leaves cached properties out of dumps and comparisons.
        return self.steps, {s.name: s for s in self.steps}

    def step(self, name: str) -> Step:
        """The step of that name (``KeyError`` if none). A fan-out pass looks up each of up to 1000 steps
        several times, so the lookup is a dict, built on first use and again if ``steps`` was replaced."""
        steps, index = self._by_name
        if steps is not self.steps or len(index) != len(steps):
            del self.__dict__["_by_name"]
            steps, index = self._by_name
        return index[name]

    def parameters_for(self, step: Step | str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """A step's parameters: pipeline ``parameters`` < step ``parameters`` < the run's overrides. A step
        already looked up can be passed as it is: a name is a search through up to 1000 steps."""
        step = self.step(step) if isinstance(step, str) else step
        return {**self.parameters, **(step.parameters or {}), **(overrides or {})}

    def caches(self, step: Step | str) -> bool:
        """Whether the step may be reused from the cache: its own ``cache``, else the pipeline's."""
        step = self.step(step) if isinstance(step, str) else step
        return self.cache if step.cache is None else step.cache

    def env_for(self, step: Step | str) -> list[EnvVar]:
        """Pipeline env, overridden by the step's env of the same name."""
        step = self.step(step) if isinstance(step, str) else step
        merged = {e.name: e for e in self.env}
        merged.update({e.name: e for e in step.env or []})
        return list(merged.values())


class ObjectMeta(BaseModel):
    """The part of metadata a pipeline file may carry; the API server owns the rest."""

    model_config = ConfigDict(extra="allow")
    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)]
    namespace: str | None = None


class PipelineDocument(Model):
    """A Pipeline as written in a file: what ``orchest run`` and ``orchest validate`` read."""

    model_config = ConfigDict(extra="ignore")
    api_version: Literal["orchest.io/v1alpha1"] = API_VERSION
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: ObjectMeta
    spec: PipelineSpec


# --- PipelineRun -----------------------------------------------------------------------------------


class SelectionMode(StrEnum):
    ALL = "All"
    SELECTED = "Selected"
    INCOMING = "Incoming"
    DOWNSTREAM = "Downstream"


class FailurePolicy(StrEnum):
    FAIL_FAST = "FailFast"
    CONTINUE = "Continue"


class Priority(StrEnum):
    INTERACTIVE = "Interactive"
    BACKGROUND = "Background"


class PipelineRef(Model):
    """A reference to a Pipeline in the same namespace."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)]
    """The Pipeline's name, in the run's namespace."""


class Selection(Model):
    """Which steps a run executes (Orchest's partial runs)."""

    mode: SelectionMode = SelectionMode.ALL
    """Which steps run: `All`, the `Selected` ones, the selected ones and everything they need
    (`Incoming`), or the selected ones and everything that depends on them (`Downstream`)."""
    steps: Annotated[list[StepName], Field(max_length=1000)] = []
    """The steps the mode starts from; required unless the mode is `All`."""


SELECTION_RULES = [
    {
        "rule": "self.mode == 'All' || size(self.steps) > 0",
        "message": "steps are required unless mode is All",
    },
]


class Workspace(StrEnum):
    """Where a run's steps work: in the pipeline's directory, or in a copy of it made for the run alone."""

    SHARED = "Shared"
    ISOLATED = "Isolated"


WorkspaceGlob = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PipelineRunSpec(Model):
    """One execution of a Pipeline: one Job per selected step, in DAG order."""

    pipeline_ref: PipelineRef
    """The Pipeline to run, in the run's namespace."""
    selection: Annotated[
        Selection, Field(json_schema_extra={"x-kubernetes-validations": SELECTION_RULES})
    ] = Selection()
    """Which steps of the pipeline to run."""
    parameters: FreeMap = {}
    """Parameters that override the pipeline's and the steps' for this run."""
    parallelism: Annotated[int, Field(ge=0, le=10000)] = 0
    """How many steps may run at once; 0 means as many as the DAG allows."""
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    """On a failed step: `FailFast` stops starting steps, `Continue` runs every step that does not
    depend on the failure."""
    priority: Priority = Priority.BACKGROUND
    """`Interactive` runs are admitted before `Background` ones and their pods get the
    `orchest-interactive` PriorityClass."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """How long the whole run may take before it fails; unset means no limit."""
    pending_timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """How long a step may wait for its pod to run (refused, unschedulable, image not pulled) before it
    fails with the last reason seen; unset means the Pipeline's value, else 600."""
    cancel: bool = False
    """Set to true to cancel the run: running steps are stopped and recorded `Cancelled`."""
    rerun_of: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)] | None
    ) = None
    """A finished run of the same pipeline: only the steps that did not succeed there, and what
    depends on them, run again; the rest is reused."""
    workspace: Workspace = Workspace.SHARED
    """Shared: the steps work in the pipeline's directory. Isolated: in .orchest/runs/<run>/workspace, a
    copy of it made before the first step, so that concurrent runs cannot clobber each other's files."""
    workspace_exclude: Annotated[list[WorkspaceGlob], Field(max_length=100)] = []
    """Globs (relative to the pipeline's directory) left out of an isolated workspace's copy, e.g. data/**."""
    cache: bool = True
    """Set to false to run every selected step even where the cache holds an execution to reuse (the
    executions are still recorded for later runs)."""


class RunPhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED)


class StepPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"
    REUSED = "Reused"
    CACHED = "Cached"

    @property
    def finished(self) -> bool:
        return self not in _UNFINISHED_STEPS

    @property
    def ok(self) -> bool:
        """Whether dependents may use this step's outputs."""
        return self in _OK_STEPS


_UNFINISHED_STEPS = frozenset({StepPhase.PENDING, StepPhase.RUNNING})
_OK_STEPS = frozenset({StepPhase.SUCCEEDED, StepPhase.REUSED, StepPhase.CACHED})
"""The one notion of "done" for dependents, ``progress`` and ``rerunOf``: the local runner and the operator
both plan with it (``dag``, ``facts``)."""
_STEP_PHASES = {phase.value: phase for phase in StepPhase}


def step_phase(value: StepPhase | str) -> StepPhase:
    """``StepPhase(value)`` by a dict lookup: the planner converts every step's phase a few times per
    pass, and the enum's constructor costs ten times as much (a 1000-step run's pass did 5000)."""
    try:
        return _STEP_PHASES[value]
    except KeyError:
        raise ValueError(f"{value!r} is not a valid StepPhase") from None


class StepFailure(Model):
    """Where a notebook failed: the cell index counts the user's cells only (not injected parameters)."""

    cell: int | None = None
    """The failing cell's index among the user's cells (the injected parameters cell not counted)."""
    ename: str | None = None
    """The exception's class, e.g. `ValueError`."""
    evalue: str | None = None
    """The exception's message."""


class StepStatus(Model):
    """What one step of a run did."""

    phase: StepPhase = StepPhase.PENDING
    """Pending, Running, Succeeded, Failed, Skipped, Cancelled, Reused (rerunOf) or Cached (an earlier
    execution with the same cache key was reused)."""
    job_name: str | None = None
    """The step's Job."""
    start_time: str | None = None
    """When the step's Job was created."""
    running_since: str | None = None
    """When the step's pod was first seen running; its `timeoutSeconds` counts from here."""
    completion_time: str | None = None
    """When the step finished."""
    attempts: int | None = None
    """How many pods ran the step (more than one after retries)."""
    message: str | None = None
    """Why the step is in its phase, in the cluster's or the step's own words."""
    reason: str | None = None
    """Why the step's pod does not run yet, or did not run, as the cluster says it: `FailedCreate`,
    `Unschedulable`, `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, `CreateContainerConfigError`,
    or `PendingTimeout`."""
    failure: StepFailure | None = None
    """For a failed notebook: the failing cell and its exception."""
    cached_from: str | None = None
    """For a Cached step: the run whose execution was reused."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A standard Kubernetes condition."""

    type: str = "Succeeded"
    """The condition's type; runs have one, `Succeeded`."""
    status: ConditionStatus
    """True when the run succeeded, False when it failed or was cancelled, Unknown before."""
    reason: str
    """A one-word reason, e.g. `Running`, `Queued`, `StepFailed`, `Timeout`."""
    message: str = ""
    """A sentence for people."""
    last_transition_time: str
    """When the status last changed."""


class RunSnapshot(Model):
    """What a run executes, frozen when the operator first sees the run (a queued run included): later
    edits of the Pipeline never change a run that was already submitted."""

    pipeline: PipelineSpec
    """The Pipeline's spec as it was when the run was first seen."""
    selected: list[str]
    """The steps this run executes."""
    reused: list[str] = []
    """Steps reused from the run named in `rerunOf`."""
    workspace_from: str | None = None
    """The isolated run (named in `rerunOf`) whose workspace this isolated run's copy starts from."""


class CachePlan(Model):
    """The run's planning pod: before any step starts, it looks every step up in the cache on the volume,
    so that steps found there cost no pod of their own."""

    phase: StepPhase = StepPhase.RUNNING
    """Running, then Succeeded (its answer is in the steps' phases) or Failed (every step then asks the
    cache in its own pod)."""
    job_name: str | None = None
    """The planning pod's Job."""
    message: str | None = None
    """What it found, or why it failed."""


class PipelineRunStatus(Model):
    """What the run did so far, as the operator observed it."""

    phase: RunPhase = RunPhase.PENDING
    """Pending, Queued, Running, Succeeded, Failed or Cancelled."""
    start_time: str | None = None
    """When the run was admitted."""
    completion_time: str | None = None
    """When the run finished."""
    progress: str | None = None
    """Finished steps out of selected steps, e.g. `3/5`."""
    steps: dict[str, StepStatus] = {}
    """Each selected step's status, by step name."""
    conditions: list[Condition] = []
    """The run's `Succeeded` condition (for `kubectl wait --for=condition=Succeeded`)."""
    observed_generation: int | None = None
    """The spec generation this status was computed from."""
    snapshot: RunSnapshot | None = None
    """What the run executes, frozen when it was first seen."""
    workspace: StepStatus | None = None
    """An isolated run's copy of the pipeline's directory: the Job that makes it, before the first step."""
    cache_plan: CachePlan | None = None
    """The run's planning pod, when steps of the run use the cache."""


class RunDocument(Model):
    """A PipelineRun manifest as written in a file (the examples, a GitOps repository)."""

    model_config = ConfigDict(extra="ignore")
    api_version: Literal["orchest.io/v1alpha1"] = API_VERSION
    kind: Literal["PipelineRun"] = "PipelineRun"
    metadata: ObjectMeta
    spec: PipelineRunSpec


# --- Pipeline status --------------------------------------------------------------------------------


class SessionPhase(StrEnum):
    STARTING = "Starting"
    READY = "Ready"
    STOPPED = "Stopped"
    FAILED = "Failed"


class SessionStatus(Model):
    """The state of the pipeline's interactive session."""

    phase: SessionPhase = SessionPhase.STOPPED
    """Starting, Ready, Stopped or Failed."""
    url: str | None = None
    """jupyter-server's in-cluster URL."""
    token_secret: str | None = None
    """The Secret whose `token` key logs in to jupyter-server."""
    kernels: list[str] = []
    """The kernelspecs the gateway offers."""
    reason: str | None = None
    """Why the session is in its phase (one word)."""
    message: str | None = None
    """Why the session is in its phase (for people)."""
    since: str | None = None
    """When the session entered its phase."""


class PipelineStatus(Model):
    """The pipeline's steps, session and runs, as the operator observed them."""

    step_count: int | None = None
    """How many steps the pipeline has."""
    session: SessionStatus | None = None
    """The interactive session's state."""
    last_run: str | None = None
    """The pipeline's most recently admitted run."""
    active_runs: list[str] = []
    """Runs of this pipeline that are running."""
    queued_runs: list[str] = []
    """Runs of this pipeline waiting for an active run to finish."""
    observed_generation: int | None = None
    """The spec generation this status was computed from."""


# --- PipelineJob ------------------------------------------------------------------------------------


class JobConcurrencyPolicy(StrEnum):
    """What a tick does while a batch of the same job is still running."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


MAX_COMBINATIONS = 256
MAX_MATRIX_PARAMETERS = 8
SCHEDULE = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|@every ([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+"
    r"|[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4})$"
)
TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"

ParameterValue = Annotated[Any, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


class RunTemplate(Model):
    """The PipelineRun fields every run of a PipelineJob gets."""

    selection: Annotated[
        Selection, Field(json_schema_extra={"x-kubernetes-validations": SELECTION_RULES})
    ] = Selection()
    """Which steps each run runs (as in a PipelineRun)."""
    parallelism: Annotated[int, Field(ge=0, le=10000)] = 0
    """Steps of one run running at once; 0 for no limit."""
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    """FailFast: a failed step stops what has not started; Continue: independent steps still run."""
    priority: Priority = Priority.BACKGROUND
    """Scheduled runs are Background by default: interactive runs go first."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail each run that has not finished this many seconds after it started."""
    pending_timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """How long a step of each run may wait for its pod to run; unset means the Pipeline's, else 600."""
    workspace: Workspace = Workspace.ISOLATED
    """Isolated (the default here): each run works on its own copy of the pipeline's directory."""
    workspace_exclude: Annotated[list[WorkspaceGlob], Field(max_length=100)] = []
    """Globs left out of each isolated workspace's copy (large data)."""


class PipelineJobSpec(Model):
    """A pipeline run once, on a schedule, or on demand, over a grid of parameter values."""

    pipeline_ref: PipelineRef
    """The Pipeline (in the job's namespace) whose runs the job creates."""
    parameters: FreeMap = {}
    """Parameter overrides for every run of the job; a combination's values override these."""
    run_template: RunTemplate = RunTemplate()
    """The fields each PipelineRun of the job gets."""
    matrix: Annotated[
        dict[str, Annotated[list[ParameterValue], Field(min_length=1, max_length=MAX_COMBINATIONS)]],
        Field(max_length=MAX_MATRIX_PARAMETERS),
    ] = {}
    """Parameter name -> values: one run per combination of the cartesian product, in a batch."""
    include: Annotated[list[FreeMap], Field(max_length=MAX_COMBINATIONS)] = []
    """Extra combinations (parameter name -> value), run after the matrix's."""
    max_parallel_runs: Annotated[int, Field(ge=0, le=MAX_COMBINATIONS)] = 0
    """Runs of one batch running at once; the others wait as Queued. 0: all at once."""
    schedule: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=SCHEDULE)] | None = None
    """5-field cron, @hourly..@yearly, or @every <duration> (at least 10s). None: one batch at creation."""
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=TIME_ZONE)] = "UTC"
    """The IANA time zone the cron expression is read in (daylight saving time included)."""
    suspend: bool = False
    """No tick runs while suspended, and none that fell meanwhile runs later (resuming starts nothing)."""
    starting_deadline_seconds: Annotated[int, Field(ge=0)] | None = None
    """A tick missed (operator down) runs late only within this many seconds; None: however late."""
    concurrency_policy: JobConcurrencyPolicy = JobConcurrencyPolicy.ALLOW
    """While a batch runs, a tick starts another (Allow), is skipped (Forbid) or cancels it (Replace)."""
    batch_history_limit: Annotated[int, Field(ge=0, le=100)] = 5
    """Finished batches whose runs are kept; older batches' runs are deleted, oldest first."""


class BatchTrigger(StrEnum):
    """Why a batch exists."""

    CREATED = "Created"
    SCHEDULE = "Schedule"
    MANUAL = "Manual"


class BatchPhase(StrEnum):
    """A batch is Running until every run finished; Succeeded only if every run succeeded."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class CombinationStatus(Model):
    """One row of a batch's table: a combination's run and how it went."""

    index: int
    """The combination's position: matrix combinations first, then include entries."""
    run: str
    """The PipelineRun's name."""
    phase: RunPhase | None = None
    """The run's phase; none while the run has not been seen yet."""
    duration_seconds: int | None = None
    """From the run's start to its completion (or to now while it runs)."""


class BatchStatus(Model):
    """One batch: its tick, its runs' phases, and (for the newest batch) each combination's run."""

    id: str
    """The batch's id: its scheduled time (UTC) for a tick, or manual-<id> for a trigger."""
    trigger: BatchTrigger
    """Created, Schedule or Manual."""
    scheduled_time: str
    """The tick (or trigger) time this batch is for."""
    phase: BatchPhase = BatchPhase.RUNNING
    """Running, Succeeded, Failed, or Skipped (a tick that concurrencyPolicy Forbid skipped)."""
    runs: int = 0
    """How many runs the batch has."""
    counts: dict[str, int] = {}
    """Run phase -> how many of the batch's runs are in it."""
    combinations: list[CombinationStatus] = []
    """Each combination's run, phase and duration; kept for the newest batch only, to bound the status."""
    completion_time: str | None = None
    """When its last run finished."""
    message: str | None = None
    """Why a tick was skipped."""


class ScheduleWindow(Model):
    """The schedule whose ticks are counted, and from when: an edit or a resume restarts the count."""

    schedule: str
    """The schedule (as written) these ticks come from."""
    time_zone: str
    """Its time zone."""
    since: str
    """Ticks after this time count; earlier ones belong to another schedule or a suspension."""
    suspended: bool = False
    """The job was suspended when this was written: its resume restarts the count."""


class PipelineJobStatus(Model):
    """What the job has done: its last and next tick, its batches, and a Ready condition."""

    last_schedule_time: str | None = None
    """The latest tick handled (run, skipped or missed)."""
    next_schedule_time: str | None = None
    """The next tick, while the job is scheduled and not suspended."""
    active: list[str] = []
    """Ids of the batches with runs still going."""
    active_runs: int = 0
    """Runs of the job that have not finished (the ACTIVE column)."""
    last_batch: str | None = None
    """The newest batch's id."""
    last_batch_phase: BatchPhase | None = None
    """The newest batch's phase (the LAST column)."""
    batches: Annotated[list[BatchStatus], Field(max_length=20)] = []
    """Recent batches, newest first (at most 20)."""
    window: ScheduleWindow | None = None
    """The operator's bookkeeping of which ticks count."""
    last_trigger: str | None = None
    """The last orchest.io/trigger annotation value a manual batch was created for."""
    missed_ticks: int = 0
    """Ticks that never ran because the operator was away past startingDeadlineSeconds (or suspended)."""
    conditions: list[Condition] = []
    """Ready: False with a reason when the spec cannot be scheduled (the field is named in the message)."""
    observed_generation: int | None = None
    """The spec generation this status is for."""


class JobDocument(Model):
    """A PipelineJob manifest as written in a file."""

    model_config = ConfigDict(extra="ignore")
    api_version: Literal["orchest.io/v1alpha1"] = API_VERSION
    kind: Literal["PipelineJob"] = "PipelineJob"
    metadata: ObjectMeta
    spec: PipelineJobSpec
