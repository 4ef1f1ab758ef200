"""Cluster-wide settings of the operator, read once from the environment at start-up.

The Deployment (``manifests/operator/deployment.yaml``, the chart's values) sets these variables; a
Pipeline can override the images per pipeline or step, never the timeouts. Defaults point at the images
released with this version, so a bare ``orchest operator`` against a cluster works without any of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from orchest_operator.leader.election import Timings

REGISTRY = "ghcr.io/orchest-operator"
EG_IMAGE = "elyra/enterprise-gateway:3.2.3"

ENV_DEFAULT_STEP_IMAGE = "ORCHEST_DEFAULT_STEP_IMAGE"
ENV_STEP_RUNNER_IMAGE = "ORCHEST_STEP_RUNNER_IMAGE"
ENV_EG_IMAGE = "ORCHEST_EG_IMAGE"
ENV_JUPYTER_SERVER_IMAGE = "ORCHEST_JUPYTER_SERVER_IMAGE"
ENV_SESSION_TIMEOUT = "ORCHEST_SESSION_TIMEOUT_SECONDS"
ENV_KERNEL_LAUNCH_TIMEOUT = "ORCHEST_KERNEL_LAUNCH_TIMEOUT_SECONDS"
ENV_KERNEL_CULL_IDLE = "ORCHEST_KERNEL_CULL_IDLE_SECONDS"
ENV_KERNEL_CULL_INTERVAL = "ORCHEST_KERNEL_CULL_INTERVAL_SECONDS"
ENV_PRIORITY_CLASSES = "ORCHEST_PRIORITY_CLASSES"
ENV_STEP_EVENTS_MAX_STEPS = "ORCHEST_STEP_EVENTS_MAX_STEPS"
ENV_STUCK_CHECK_AFTER = "ORCHEST_STUCK_CHECK_AFTER_SECONDS"
ENV_STUCK_CHECK_EVERY = "ORCHEST_STUCK_CHECK_EVERY_SECONDS"
ENV_LEASE_DURATION = "ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS"
ENV_RENEW_DEADLINE = "ORCHEST_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"
ENV_RETRY_PERIOD = "ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A variable with a value the operator cannot use; it refuses to start rather than guess."""


def release() -> str:
    """The version images are tagged with: the installed distribution's, as the Dockerfiles install it."""
    try:
        return version("orchest-operator")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "latest"


def image(name: str) -> str:
    return f"{REGISTRY}/{name}:{release()}"


@dataclass(frozen=True)
class Settings:
    # The image that ships ``orchest step`` (images/step-runner): Jobs run it unless a pipeline or step
    # names another image.
    step_runner_image: str = field(default_factory=lambda: image("orchest-step-runner"))
    # The image of steps without ``image``; defaults to the step runner. A custom one must have
    # ``orchest`` installed (build it FROM the step runner).
    default_step_image: str = ""
    # Jupyter Enterprise Gateway of interactive sessions; kernels run as pods that EG starts.
    eg_image: str = EG_IMAGE
    # The jupyter-server of interactive sessions (images/jupyter-server), connected to EG.
    jupyter_server_image: str = field(default_factory=lambda: image("orchest-jupyter-server"))
    # A session not Ready within this many seconds is Failed (the seed system's launcher timeout).
    session_timeout_seconds: int = 300
    # EG's wait for a kernel pod to start (an image pull included); jupyter-server sends the same value.
    kernel_launch_timeout_seconds: int = 120
    # EG shuts down kernels idle (and unconnected) this long, checking every interval; 0 keeps them.
    kernel_cull_idle_seconds: int = 3600
    kernel_cull_interval_seconds: int = 60
    # Whether step Jobs name the PriorityClasses orchest-interactive / orchest-background. Off where those
    # PriorityClasses are not installed (the chart's priorityClasses.create=false), since a pod naming a
    # missing PriorityClass is rejected.
    priority_classes: bool = True
    # Runs of up to this many steps get a StepStarted and a StepSucceeded Event per step (StepFailed is
    # always sent). Each Event is a write to the API server and a row of ``kubectl describe``: above this,
    # a run gets Events at each quarter of its progress instead, and its status holds every step.
    step_events_max_steps: int = 100
    # A step whose pod does not show as running this many seconds after its Job was created is checked
    # for a reason (a Pending pod's, or its Job's FailedCreate events), then again every interval.
    stuck_check_after_seconds: float = 5.0
    stuck_check_every_seconds: float = 10.0
    # Leader election (``orchest operator --leader-elect``), kube-controller-manager's timings: a standby
    # takes over once the Lease went unrenewed this long (as it observed it)...
    lease_duration_seconds: float = 15.0
    # ...the leader stops acting when it could not renew for this long (shorter: nobody acts in between)...
    renew_deadline_seconds: float = 10.0
    # ...and every replica looks at the Lease (the leader renews it) this often.
    retry_period_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.default_step_image:
            object.__setattr__(self, "default_step_image", self.step_runner_image)
        try:
            self.lease_timings()
        except ValueError as err:
            raise SettingsError(f"leader election: {err}") from None

    def lease_timings(self) -> Timings:
        return Timings(self.lease_duration_seconds, self.renew_deadline_seconds, self.retry_period_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default ``os.environ``); unset or empty variables keep their defaults."""
        env = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        for name, attr in (
            (ENV_STEP_RUNNER_IMAGE, "step_runner_image"),
            (ENV_DEFAULT_STEP_IMAGE, "default_step_image"),
            (ENV_EG_IMAGE, "eg_image"),
            (ENV_JUPYTER_SERVER_IMAGE, "jupyter_server_image"),
        ):
            value = env.get(name, "").strip()
            if value:
                if any(c.isspace() for c in value):
                    raise SettingsError(f"{name} must be an image reference without spaces, got {value!r}")
                kwargs[attr] = value
        for name, attr, least in (
            (ENV_SESSION_TIMEOUT, "session_timeout_seconds", 1),
            (ENV_KERNEL_LAUNCH_TIMEOUT, "kernel_launch_timeout_seconds", 1),
            (ENV_KERNEL_CULL_IDLE, "kernel_cull_idle_seconds", 0),
            (ENV_KERNEL_CULL_INTERVAL, "kernel_cull_interval_seconds", 1),
        ):
            number = env.get(name, "").strip()
            if number:
                if not number.isdigit() or int(number) < least:
                    kind = "positive" if least else "non-negative"
                    raise SettingsError(f"{name} must be a {kind} whole number, got {number!r}")
                kwargs[attr] = int(number)
        number = env.get(ENV_STEP_EVENTS_MAX_STEPS, "").strip()
        if number:
            if not number.isdigit():
                raise SettingsError(
                    f"{ENV_STEP_EVENTS_MAX_STEPS} must be a non-negative whole number, got {number!r}"
                )
            kwargs["step_events_max_steps"] = int(number)
        for name, attr in (
            (ENV_STUCK_CHECK_AFTER, "stuck_check_after_seconds"),
            (ENV_STUCK_CHECK_EVERY, "stuck_check_every_seconds"),
            (ENV_LEASE_DURATION, "lease_duration_seconds"),
            (ENV_RENEW_DEADLINE, "renew_deadline_seconds"),
            (ENV_RETRY_PERIOD, "retry_period_seconds"),
        ):
            number = env.get(name, "").strip()
            if number:
                try:
                    seconds = float(number)
                except ValueError:
                    seconds = -1.0
                if not 0 < seconds < float("inf"):
                    raise SettingsError(f"{name} must be a positive number of seconds, got {number!r}")
                kwargs[attr] = seconds
        flag = env.get(ENV_PRIORITY_CLASSES, "").strip().lower()
        if flag:
            if flag not in _TRUE | _FALSE:
                raise SettingsError(f"{ENV_PRIORITY_CLASSES} must be true or false, got {flag!r}")
            kwargs["priority_classes"] = flag in _TRUE
        return cls(**kwargs)
