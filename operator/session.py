"""What an interactive session should be, and what state it is in: pure functions, no API calls.

The kopf glue (``handlers/session.py``) reads the Pipeline and the objects it owns, asks this module
for the desired objects and the ``status.session`` to write, and does the writes. Everything that decides
something lives here so it can be tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchest_operator import kernelspecs
from orchest_operator.builders import session as build
from orchest_operator.builders.session import DockerHost, SessionNames
from orchest_operator.kernelspecs import KernelspecError, RenderedKernel
from orchest_operator.models import (
    DNS1123_LABEL,
    Kernel,
    ProcessProxy,
    SessionPhase,
    SessionStatus,
    Volume,
)
from orchest_operator.models import Session as SessionSpec
from orchest_operator.settings import Settings

REASON_INVALID = "InvalidSpec"
REASON_DOCKER_SECRET = "DockerHostSecret"
REASON_TIMEOUT = "Timeout"
REASON_DISABLED = "Disabled"
REASON_STARTING = "DeploymentsNotAvailable"
REASON_READY = "DeploymentsAvailable"

DEFAULT_KERNEL = Kernel(name="python")
SPEC_FIELDS = ("session", "volume", "image")
"""The parts of a Pipeline's spec a session is built from; an edit of anything else (its steps) leaves the
session as it is."""
_PATTERNS = {DNS1123_LABEL: "lowercase letters, digits and '-', starting and ending with a letter or digit"}


@dataclass(frozen=True)
class Plan:
    """The session a Pipeline's spec asks for, or why it cannot have one (``problems``)."""

    proxy: ProcessProxy = ProcessProxy.KUBERNETES
    kernels: list[RenderedKernel] = field(default_factory=list)
    volume: Volume | None = None
    docker_secret: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def kernel_names(self) -> list[str]:
        return [k.name for k in self.kernels]


def _describe(err: ValidationError, prefix: str) -> list[str]:
    """One line per pydantic error, pointing at the field as the user wrote it."""
    lines = []
    for e in err.errors():
        where = prefix
        for part in e["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        pattern = (e.get("ctx") or {}).get("pattern")
        what = f"must be {_PATTERNS[pattern]}" if pattern in _PATTERNS else e["msg"]
        shown = "" if e["type"] == "missing" else f" {e.get('input')!r}"
        lines.append(f"{where}{shown}: {what}")
    return lines


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: Any, prefix: str, problems: list[str]) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems.extend(_describe(err, prefix))
        return None


def plan(spec: Mapping[str, Any], settings: Settings) -> Plan:
    """Validate the parts of a Pipeline spec a session depends on and render its kernelspecs.

    Only the ``SPEC_FIELDS`` are read, so a broken step never hides a session problem (the run handlers
    report those).
    """
    problems: list[str] = []
    session = _parse(SessionSpec, spec.get("session") or {}, "spec.session", problems)
    volume = None
    if spec.get("volume") is None:
        problems.append("spec.volume is required: jupyter-server and every kernel mount the pipeline's PVC")
    else:
        volume = _parse(Volume, spec["volume"], "spec.volume", problems)
    if session is None:
        return Plan(volume=volume, problems=problems)

    pipeline_image = spec.get("image") or settings.default_step_image
    kernels = session.kernels or [DEFAULT_KERNEL]
    rendered = []
    seen: set[str] = set()
    for kernel in kernels:
        if kernel.name in seen:
            problems.append(f"spec.session.kernels: kernel name {kernel.name!r} is used twice")
            continue
        seen.add(kernel.name)
        try:
            rendered.append(kernelspecs.render(kernel, session.process_proxy, kernel.image or pipeline_image))
        except KernelspecError as err:
            problems.append(f"spec.session.kernels: {err}")
    if session.process_proxy is not ProcessProxy.KUBERNETES and not session.docker_host_secret:
        problems.append(
            f"spec.session.dockerHostSecret is required with processProxy {session.process_proxy.value}: "
            f"name a Secret with a {build.DOCKER_HOST_KEY} key"
        )
    return Plan(
        proxy=session.process_proxy,
        kernels=rendered,
        volume=volume,
        docker_secret=session.docker_host_secret,
        problems=problems,
    )


def docker_host(name: str, namespace: str, secret: Mapping[str, Any] | None) -> tuple[DockerHost | None, str]:
    """The Docker daemon EG should use, from the user's Secret; or ``(None, why not)``."""
    host_key, tls_files = build.DOCKER_HOST_KEY, build.DOCKER_TLS_FILES
    if secret is None:
        return None, (
            f"Secret {name!r} (spec.session.dockerHostSecret) does not exist in namespace {namespace!r}; "
            f"create it with a {host_key} key (and optionally {', '.join(tls_files)})"
        )
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    if host_key not in keys:
        present = ", ".join(sorted(keys)) or "none"
        return None, f"Secret {name!r} has no {host_key} key (it has: {present})"
    tls = [f for f in tls_files if f in keys]
    if tls and len(tls) != len(tls_files):
        missing = ", ".join(f for f in tls_files if f not in keys)
        return None, f"Secret {name!r} has {', '.join(tls)} but not {missing}: give all TLS files or none"
    return DockerHost(secret=name, tls=bool(tls)), ""


def options(settings: Settings) -> build.SessionOptions:
    return build.SessionOptions(
        eg_image=settings.eg_image,
        server_image=settings.jupyter_server_image,
        kernel_launch_timeout_seconds=settings.kernel_launch_timeout_seconds,
        cull_idle_seconds=settings.kernel_cull_idle_seconds,
        cull_interval_seconds=settings.kernel_cull_interval_seconds,
    )


def session_of(
    pipeline: Mapping[str, Any], plan: Plan, settings: Settings, docker: DockerHost | None = None
) -> build.Session:
    if plan.problems or plan.volume is None:
        raise ValueError(f"a session cannot be built from an invalid plan: {plan.problems}")
    return build.Session(
        pipeline=pipeline,
        volume=plan.volume,
        kernels=plan.kernels,
        proxy=plan.proxy,
        options=options(settings),
        docker=docker,
    )


def token_digest(secret: Mapping[str, Any]) -> str:
    """Fingerprint of the token Secret's content, so pods restart when the Secret was replaced."""
    data = dict(secret.get("data") or {}) | dict(secret.get("stringData") or {})
    return build.digest(data)


def all_refs(names: SessionNames) -> list[tuple[str, str, str]]:
    """Every object a session may own, as (apiVersion, kind, name): what disabling deletes."""
    return [
        ("apps/v1", "Deployment", names.server),
        ("v1", "Service", names.server),
        ("apps/v1", "Deployment", names.eg),
        ("v1", "Service", names.eg),
        ("v1", "ConfigMap", names.kernelspecs),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", names.eg),
        ("rbac.authorization.k8s.io/v1", "Role", names.eg),
        ("v1", "ServiceAccount", names.eg),
        ("v1", "Secret", names.token),
    ]


def ref(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    return manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]


def obsolete(names: SessionNames, desired: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Session objects that exist for another configuration (e.g. EG's Role after a switch to Docker)."""
    wanted = {ref(m) for m in desired} | {("v1", "Secret", names.token)}
    return [r for r in all_refs(names) if r not in wanted]


# --- keeping existing objects in line ---------------------------------------------------------------

ANNOTATION_DESIRED = "orchest.io/desired-digest"
_OWNED_FIELDS = {
    "ServiceAccount": ("automountServiceAccountToken",),
    "Role": ("rules",),
    "RoleBinding": ("subjects",),
    "ConfigMap": ("data",),
    "Deployment": ("spec",),
    "Service": ("spec",),
}


def stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with a digest of what the operator owns in it, to tell later whether it drifted."""
    owned = {k: manifest.get(k) for k in _OWNED_FIELDS[manifest["kind"]]}
    annotations = manifest["metadata"].setdefault("annotations", {})
    annotations[ANNOTATION_DESIRED] = build.digest(owned)
    return manifest


def drift_patch(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that brings ``existing`` to ``desired`` (both stamped), or None when it is current.

    Only the fields the operator owns are sent; keys of a ConfigMap's ``data`` that are no longer wanted
    (a removed kernel) are deleted explicitly, since a merge patch keeps keys it does not mention.
    """
    key = ANNOTATION_DESIRED
    want = desired["metadata"]["annotations"][key]
    if (existing.get("metadata", {}).get("annotations") or {}).get(key) == want:
        return None
    body: dict[str, Any] = {
        "metadata": {"labels": dict(desired["metadata"]["labels"]), "annotations": {key: want}},
    }
    for name in _OWNED_FIELDS[desired["kind"]]:
        body[name] = desired.get(name)
    if desired["kind"] == "ConfigMap":
        gone = set(existing.get("data") or {}) - set(desired["data"])
        body["data"] = {**desired["data"], **dict.fromkeys(gone)}
    return body


# --- status -----------------------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def previous(status: Mapping[str, Any] | None) -> SessionStatus | None:
    """The ``status.session`` written before; unreadable (hand-edited) counts as none."""
    raw = (status or {}).get("session")
    if not raw:
        return None
    try:
        return SessionStatus.model_validate(raw)
    except ValidationError:
        return None


def stopped(now: datetime) -> SessionStatus:
    return SessionStatus(phase=SessionPhase.STOPPED, reason=REASON_DISABLED, since=timestamp(now))


def failed(reason: str, message: str, now: datetime, kernels: Sequence[str] = ()) -> SessionStatus:
    return SessionStatus(
        phase=SessionPhase.FAILED, reason=reason, message=message, since=timestamp(now), kernels=list(kernels)
    )


def available(deployment: Mapping[str, Any] | None) -> bool:
    """The Deployment controller's verdict: condition Available=True for the current generation."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    return any(
        c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _waiting_for(name: str, deployment: Mapping[str, Any] | None) -> str:
    if not deployment:
        return f"Deployment {name} does not exist"
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "False" and condition.get("message"):
            return f"Deployment {name}: {condition['message']}"
    return f"Deployment {name} has no available replica yet"


def observe(
    *,
    names: SessionNames,
    namespace: str,
    kernels: Sequence[str],
    deployments: Mapping[str, Mapping[str, Any] | None],
    before: SessionStatus | None,
    now: datetime,
    timeout_seconds: int,
    restart_clock: bool = False,
) -> SessionStatus:
    """``status.session`` of an enabled, valid session from its two Deployments (keyed by name).

    Ready needs both Available. Otherwise the session is Starting since the moment it last left Ready
    (or was created, or its spec changed: ``restart_clock``), and Failed once that lasted longer than
    ``timeout_seconds``. A Failed session still turns Ready when its Deployments recover.
    """
    common = {
        "url": build.server_url(names, namespace),
        "token_secret": names.token,
        "kernels": list(kernels),
    }
    order = (names.eg, names.server)
    if all(available(deployments.get(n)) for n in order):
        kept = before is not None and before.phase is SessionPhase.READY and before.since
        since = before.since if kept and before else timestamp(now)
        return SessionStatus(phase=SessionPhase.READY, reason=REASON_READY, since=since, **common)
    waiting = "; ".join(
        _waiting_for(n, deployments.get(n)) for n in order if not available(deployments.get(n))
    )
    if before is not None and not restart_clock:
        if before.phase is SessionPhase.FAILED and before.reason == REASON_TIMEOUT:
            message = f"not Ready within {timeout_seconds} s: {waiting}"
            return before.model_copy(update={"message": message, **common})
        if before.phase is SessionPhase.STARTING and deadline_passed(before, now, timeout_seconds):
            return SessionStatus(
                phase=SessionPhase.FAILED,
                reason=REASON_TIMEOUT,
                message=f"not Ready within {timeout_seconds} s: {waiting}",
                since=timestamp(now),
                **common,
            )
        if before.phase is SessionPhase.STARTING and before.since:
            return SessionStatus(
                phase=SessionPhase.STARTING,
                reason=REASON_STARTING,
                message=waiting,
                since=before.since,
                **common,
            )
    return SessionStatus(
        phase=SessionPhase.STARTING, reason=REASON_STARTING, message=waiting, since=timestamp(now), **common
    )


def observable(status: SessionStatus) -> bool:
    """Whether the objects were reconciled for the current spec, so the Deployments decide the phase.

    Otherwise (stopped, invalid spec, missing Docker Secret) only a spec change moves the session on.
    """
    if status.phase is SessionPhase.FAILED:
        return status.reason == REASON_TIMEOUT
    return status.phase in (SessionPhase.STARTING, SessionPhase.READY)


def deadline_passed(status: SessionStatus | None, now: datetime, timeout_seconds: int) -> bool:
    """Whether a Starting session has run out of time (the timer's cheap check before any API call)."""
    if status is None or status.phase is not SessionPhase.STARTING:
        return False
    started = _parse_time(status.since)
    return started is None or (now - started).total_seconds() >= timeout_seconds


def status_patch(status: SessionStatus) -> dict[str, Any]:
    """``{"session": ...}`` for a merge patch of ``status``; unset fields are sent as null to clear them."""
    return {"session": status.model_dump(by_alias=True, mode="json")}
