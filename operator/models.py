"""Pydantic models of the orchest custom resources.

These models are the single source of truth: the CRDs under ``manifests/crds`` are generated from them
(``orchest crds``), the CLI validates pipeline files with them, and the operator parses objects it reads
from the API server with them. Field names are camelCase on the wire and snake_case in Python.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GROUP = "orchest.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
STEP_FILE = r"^[^/].*\.(ipynb|py|sh)$"
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
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: aliases, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


FreeMap = Annotated[
    dict[str, Any],
    Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
]


LIST_MAP_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class EnvVar(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME)]
    value: str = ""


class Resources(Model):
    """Kubernetes requests and limits; extended resources such as ``nvidia.com/gpu`` are allowed."""

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class Volume(Model):
    claim_name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)]
    sub_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^/]")] | None = None
    mount_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^/")] = "/project"


class Step(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!(self.name in self.dependsOn)", "message": "a step cannot depend on itself"}
            ]
        }
    )

    name: StepName
    file: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=STEP_FILE)]
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    parameters: FreeMap | None = None
    env: Annotated[list[EnvVar], Field(json_schema_extra=LIST_MAP_BY_NAME)] | None = None
    resources: Resources | None = None
    depends_on: Annotated[list[StepName], Field(max_length=1000)] = []
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    QUEUE = "Queue"
    FORBID = "Forbid"


class ProcessProxy(StrEnum):
    KUBERNETES = "Kubernetes"
    DOCKER_SWARM = "DockerSwarm"
    DOCKER = "Docker"


class Kernel(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=DNS1123_LABEL)]
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    display_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    language: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "python"


class Session(Model):
    enabled: bool = False
    kernels: Annotated[list[Kernel], Field(max_length=20, json_schema_extra=LIST_MAP_BY_NAME)] = []
    process_proxy: ProcessProxy = ProcessProxy.KUBERNETES
    docker_host_secret: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)] | None
    ) = None


class PipelineSpec(Model):
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    volume: Volume | None = None
    parameters: FreeMap = {}
    env: Annotated[list[EnvVar], Field(json_schema_extra=LIST_MAP_BY_NAME)] = []
    resources: Resources | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=1000, json_schema_extra=LIST_MAP_BY_NAME)]
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.QUEUE
    run_history_limit: Annotated[int, Field(ge=0, le=1000)] = 10
    session: Session = Session()

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def parameters_for(self, step: Step | str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """A step's parameters: pipeline ``parameters`` < step ``parameters`` < the run's overrides. A step
        already looked up can be passed as it is: a name is a search through up to 1000 steps."""
        step = self.step(step) if isinstance(step, str) else step
        return {**self.parameters, **(step.parameters or {}), **(overrides or {})}

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
    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)]


class Selection(Model):
    mode: SelectionMode = SelectionMode.ALL
    steps: Annotated[list[StepName], Field(max_length=1000)] = []


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
    pipeline_ref: PipelineRef
    selection: Annotated[
        Selection, Field(json_schema_extra={"x-kubernetes-validations": SELECTION_RULES})
    ] = Selection()
    parameters: FreeMap = {}
    parallelism: Annotated[int, Field(ge=0, le=10000)] = 0
    failure_policy: FailurePolicy = FailurePolicy.FAIL_FAST
    priority: Priority = Priority.BACKGROUND
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    cancel: bool = False
    rerun_of: (
        Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS1123_LABEL)] | None
    ) = None
    workspace: Workspace = Workspace.SHARED
    """Shared: the steps work in the pipeline's directory. Isolated: in .orchest/runs/<run>/workspace, a
    copy of it made before the first step, so that concurrent runs cannot clobber each other's files."""
    workspace_exclude: Annotated[list[WorkspaceGlob], Field(max_length=100)] = []
    """Globs (relative to the pipeline's directory) left out of an isolated workspace's copy, e.g. data/**."""


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

    @property
    def finished(self) -> bool:
        return self not in _UNFINISHED_STEPS

    @property
    def ok(self) -> bool:
        """Whether dependents may use this step's outputs."""
        return self in _OK_STEPS


_UNFINISHED_STEPS = frozenset({StepPhase.PENDING, StepPhase.RUNNING})
_OK_STEPS = frozenset({StepPhase.SUCCEEDED, StepPhase.REUSED})
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
    ename: str | None = None
    evalue: str | None = None


class StepStatus(Model):
    phase: StepPhase = StepPhase.PENDING
    job_name: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int | None = None
    message: str | None = None
    failure: StepFailure | None = None


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    type: str = "Succeeded"
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str


class RunSnapshot(Model):
    """What a run executes, frozen when the operator first sees the run (a queued run included): later
    edits of the Pipeline never change a run that was already submitted."""

    pipeline: PipelineSpec
    selected: list[str]
    reused: list[str] = []


class PipelineRunStatus(Model):
    phase: RunPhase = RunPhase.PENDING
    start_time: str | None = None
    completion_time: str | None = None
    progress: str | None = None
    steps: dict[str, StepStatus] = {}
    conditions: list[Condition] = []
    observed_generation: int | None = None
    snapshot: RunSnapshot | None = None


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
    phase: SessionPhase = SessionPhase.STOPPED
    url: str | None = None
    token_secret: str | None = None
    kernels: list[str] = []
    reason: str | None = None
    message: str | None = None
    since: str | None = None


class PipelineStatus(Model):
    step_count: int | None = None
    session: SessionStatus | None = None
    last_run: str | None = None
    active_runs: list[str] = []
    queued_runs: list[str] = []
    observed_generation: int | None = None


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
