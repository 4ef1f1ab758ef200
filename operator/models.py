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
