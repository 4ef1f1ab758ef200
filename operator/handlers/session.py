"""Interactive sessions of Pipelines: kopf glue around :mod:`orchest_operator.session`.

* A change of what the session is built from (and the operator's start) reconciles: ensure the objects,
  patch drifted ones, delete the ones the configuration no longer has, or delete everything when the
  session is disabled.
* Events of the session Deployments move ``status.session`` to Ready (or back to Starting) at once.
* A timer runs only while a session is Starting and fails it when it passed the timeout.

Deleting the Pipeline needs no handler: every session object has it as controller owner. Handlers are
synchronous (kopf runs them in threads) because :mod:`orchest_operator.kube` is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import pykube

from orchest_operator import kube, naming, session
from orchest_operator.builders import session as build
from orchest_operator.builders.session import SessionNames
from orchest_operator.models import API_VERSION, GROUP, VERSION, ProcessProxy, SessionPhase, SessionStatus
from orchest_operator.settings import Settings

PIPELINES = (GROUP, VERSION, "pipelines")
DEADLINE_CHECK_SECONDS = 1.0  # the check is in memory; API calls happen only once the deadline passed
DOCKER_SECRET_RETRY_SECONDS = 30
SESSION_DEPLOYMENTS = {
    naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
    naming.LABEL_COMPONENT: lambda value, **_: value in (build.COMPONENT_EG, build.COMPONENT_SERVER),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _enabled(spec: Mapping[str, Any]) -> bool:
    return bool((spec.get("session") or {}).get("enabled"))


def _write(api: pykube.HTTPClient, namespace: str, name: str, status: SessionStatus) -> None:
    kube.patch_status(api, kube.Pipeline, namespace, name, session.status_patch(status))


def _remove(api: pykube.HTTPClient, namespace: str, refs: Iterable[tuple[str, str, str]]) -> None:
    for api_version, kind, name in refs:
        kube.delete(api, kube.KINDS[(api_version, kind)], namespace, name)


def refresh(
    api: pykube.HTTPClient,
    pipeline: Mapping[str, Any],
    settings: Settings,
    kernels: list[str],
    *,
    restart_clock: bool = False,
) -> None:
    """Write ``status.session`` from the two Deployments as they are now (when it changed)."""
    meta = pipeline["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    names = SessionNames.of(name)
    before = session.previous(pipeline.get("status"))
    status = session.observe(
        names=names,
        namespace=namespace,
        kernels=kernels,
        deployments={n: kube.get(api, pykube.Deployment, namespace, n) for n in (names.eg, names.server)},
        before=before,
        now=_now(),
        timeout_seconds=settings.session_timeout_seconds,
        restart_clock=restart_clock,
    )
    if status != before:
        _write(api, namespace, name, status)


def reconcile(pipeline: Mapping[str, Any], *, restart_clock: bool) -> None:
    settings = Settings.from_env()
    api = kube.client()
    meta = pipeline["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    names = SessionNames.of(name)
    spec = pipeline.get("spec") or {}
    before = session.previous(pipeline.get("status"))

    if not _enabled(spec):
        if before is None or before.phase is not SessionPhase.STOPPED:
            _remove(api, namespace, session.all_refs(names))
            _write(api, namespace, name, session.stopped(_now()))
        return

    plan = session.plan(spec, settings)
    if plan.problems:
        # The objects of a previous, valid spec keep running: a typo should not kill open notebooks.
        _write(api, namespace, name, session.failed(session.REASON_INVALID, "; ".join(plan.problems), _now()))
        return

    docker = None
    if plan.proxy is not ProcessProxy.KUBERNETES and plan.docker_secret:
        found = kube.get(api, pykube.Secret, namespace, plan.docker_secret)
        docker, problem = session.docker_host(plan.docker_secret, namespace, found)
        if docker is None:
            if before is None or (before.reason, before.message) != (session.REASON_DOCKER_SECRET, problem):
                _write(api, namespace, name, session.failed(session.REASON_DOCKER_SECRET, problem, _now()))
            raise kopf.TemporaryError(problem, delay=DOCKER_SECRET_RETRY_SECONDS)

    built = session.session_of(pipeline, plan, settings, docker)
    # Fresh tokens on every pass; only the first create wins, a 409 returns the Secret that exists.
    tokens = kube.ensure(api, build.token_secret(built, secrets.token_urlsafe(32), secrets.token_urlsafe(32)))
    desired = [session.stamped(m) for m in build.objects(built, session.token_digest(tokens))]
    for manifest in desired:
        existing = kube.ensure(api, manifest)
        patch = session.drift_patch(manifest, existing)
        if patch is not None:
            kube.patch(api, kube.kind_of(manifest), namespace, manifest["metadata"]["name"], patch)
    _remove(api, namespace, session.obsolete(names, desired))
    refresh(api, pipeline, settings, plan.kernel_names, restart_clock=restart_clock)


@kopf.on.create(*PIPELINES)
@kopf.on.update(*PIPELINES)
@kopf.on.resume(*PIPELINES)
def session_changed(body: kopf.Body, reason: kopf.Reason, **_: Any) -> None:
    """Reconcile; a created or edited session starts its timeout anew, an operator restart does not.
    kopf's diff base of a Pipeline holds only the spec fields a session is built from (``watching``), so
    an update is an edit of those, never of the steps."""
    reconcile(body, restart_clock=reason != kopf.Reason.RESUME)


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "Pipeline" and ref.get("apiVersion") == API_VERSION and ref.get("controller"):
            return ref.get("name")
    return None


@kopf.on.event("apps", "v1", "deployments", labels=SESSION_DEPLOYMENTS)
def session_deployment_event(namespace: str, body: kopf.Body, type: str | None, **_: Any) -> None:
    """A session Deployment changed: re-read the session's state (or recreate a deleted Deployment)."""
    owner = _owner(body)
    if owner is None:
        return
    api = kube.client()
    pipeline = kube.get(api, kube.Pipeline, namespace, owner)
    if pipeline is None or pipeline["metadata"].get("deletionTimestamp"):
        return
    if not _enabled(pipeline.get("spec") or {}):
        return
    if type == "DELETED":
        reconcile(pipeline, restart_clock=False)
        return
    before = session.previous(pipeline.get("status"))
    if before is not None and session.observable(before):
        refresh(api, pipeline, Settings.from_env(), before.kernels)


def _starting(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    return _enabled(spec) and ((status or {}).get("session") or {}).get("phase") == SessionPhase.STARTING


@kopf.timer(*PIPELINES, interval=DEADLINE_CHECK_SECONDS, when=_starting)
def session_deadline(body: kopf.Body, status: kopf.Status, **_: Any) -> None:
    settings = Settings.from_env()
    before = session.previous(status)
    if before is not None and session.deadline_passed(before, _now(), settings.session_timeout_seconds):
        refresh(kube.client(), body, settings, before.kernels)
