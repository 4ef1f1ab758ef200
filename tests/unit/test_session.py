"""Session logic without a cluster: validation, the Docker Secret, drift, and the status state machine."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchest_operator import session
from orchest_operator.builders import session as build
from orchest_operator.builders.session import DockerHost, SessionNames
from orchest_operator.models import SessionPhase, SessionStatus
from orchest_operator.settings import Settings

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NAMES = SessionNames.of("demo")
VOLUME = {"claimName": "data"}


def spec(**session_spec: Any) -> dict[str, Any]:
    return {"volume": VOLUME, "image": "elyra/kernel-py:3.2.3", "session": {"enabled": True, **session_spec}}


# --- plan -------------------------------------------------------------------------------------------


def test_default_is_one_python_kernel_on_the_pipeline_image() -> None:
    plan = session.plan(spec(), Settings())
    assert plan.problems == []
    assert plan.kernel_names == ["python"]
    assert (
        plan.kernels[0].spec["metadata"]["process_proxy"]["config"]["image_name"] == "elyra/kernel-py:3.2.3"
    )


def test_kernel_image_falls_back_to_the_default_step_image() -> None:
    settings = Settings.from_env({"ORCHEST_DEFAULT_STEP_IMAGE": "example.com/kernels/py:1"})
    plan = session.plan(
        {"volume": VOLUME, "session": {"enabled": True, "kernels": [{"name": "a"}]}}, settings
    )
    assert (
        plan.kernels[0].spec["metadata"]["process_proxy"]["config"]["image_name"]
        == "example.com/kernels/py:1"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            spec(kernels=[{"name": "py", "image": "Not An Image"}]),
            "spec.session.kernels: kernel 'py': invalid image 'Not An Image': expected "
            "[registry[:port]/]name[:tag][@digest] with a lowercase name (for example elyra/kernel-py:3.2.3)",
        ),
        (
            spec(kernels=[{"name": "Bad_Name"}]),
            "spec.session.kernels[0].name 'Bad_Name': must be lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        ),
        (
            spec(kernels=[{"name": "py"}, {"name": "py"}]),
            "spec.session.kernels: kernel name 'py' is used twice",
        ),
        (
            {"image": "k:1", "session": {"enabled": True}},
            "spec.volume is required: jupyter-server and every kernel mount the pipeline's PVC",
        ),
        (
            spec(processProxy="DockerSwarm"),
            "spec.session.dockerHostSecret is required with processProxy DockerSwarm: "
            "name a Secret with a DOCKER_HOST key",
        ),
        (
            spec(processProxy="Yarn"),
            "spec.session.processProxy 'Yarn': Input should be 'Kubernetes', 'DockerSwarm' or 'Docker'",
        ),
    ],
)
def test_invalid_specs_are_explained(raw: dict[str, Any], expected: str) -> None:
    assert session.plan(raw, Settings()).problems == [expected]


def test_session_of_refuses_an_invalid_plan() -> None:
    plan = session.plan(spec(kernels=[{"name": "Bad_Name"}]), Settings())
    with pytest.raises(ValueError, match="invalid plan"):
        session.session_of({"metadata": {}}, plan, Settings())


# --- the user's Docker Secret -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "host", "problem"),
    [
        (None, None, "Secret 'swarm' (spec.session.dockerHostSecret) does not exist in namespace 'ns'"),
        ({"data": {"HOST": "x"}}, None, "Secret 'swarm' has no DOCKER_HOST key (it has: HOST)"),
        (
            {"data": {"DOCKER_HOST": "x", "ca.pem": "c"}},
            None,
            "Secret 'swarm' has ca.pem but not cert.pem, key.pem: give all TLS files or none",
        ),
        ({"data": {"DOCKER_HOST": "x"}}, DockerHost("swarm"), ""),
        (
            {"stringData": {"DOCKER_HOST": "x", "ca.pem": "", "cert.pem": "", "key.pem": ""}},
            DockerHost("swarm", tls=True),
            "",
        ),
    ],
)
def test_docker_host_secret(secret: dict[str, Any] | None, host: DockerHost | None, problem: str) -> None:
    found, why = session.docker_host("swarm", "ns", secret)
    assert found == host
    assert why.startswith(problem) and bool(why) == bool(problem)


# --- drift ------------------------------------------------------------------------------------------


def _config_map(data: dict[str, str]) -> dict[str, Any]:
    return session.stamped(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "b"}},
            "data": data,
        }
    )


def test_an_unchanged_object_needs_no_patch() -> None:
    desired = _config_map({"py": "{}"})
    assert session.drift_patch(desired, copy.deepcopy(desired)) is None


def test_a_removed_kernel_is_deleted_from_the_config_map() -> None:
    existing = _config_map({"py": "{}", "r": "{}"})
    desired = _config_map({"py": "{1}"})
    patch = session.drift_patch(desired, existing)
    assert patch is not None
    assert patch["data"] == {"py": "{1}", "r": None}
    assert (
        patch["metadata"]["annotations"][session.ANNOTATION_DESIRED]
        == (desired["metadata"]["annotations"][session.ANNOTATION_DESIRED])
    )


def test_objects_that_another_configuration_left_behind_are_obsolete() -> None:
    kubernetes = [("rbac.authorization.k8s.io/v1", "Role", "demo-eg"), ("v1", "Secret", "demo-session-token")]
    desired = [{"apiVersion": a, "kind": k, "metadata": {"name": n}} for a, k, n in session.all_refs(NAMES)]
    assert session.obsolete(NAMES, desired) == []
    without_rbac = [m for m in desired if m["kind"] not in ("Role", "RoleBinding", "Secret")]
    gone = session.obsolete(NAMES, without_rbac)
    assert kubernetes[0] in gone and ("rbac.authorization.k8s.io/v1", "RoleBinding", "demo-eg") in gone
    assert kubernetes[1] not in gone  # the token Secret is never obsolete while the session is on


# --- status -----------------------------------------------------------------------------------------


def deployment(available: bool, *, message: str = "") -> dict[str, Any]:
    conditions = [{"type": "Available", "status": "True" if available else "False", "message": message}]
    return {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": conditions}}


def observe(eg: Any, server: Any, before: SessionStatus | None, now: datetime, **kw: Any) -> SessionStatus:
    return session.observe(
        names=NAMES,
        namespace="ns",
        kernels=["python"],
        deployments={NAMES.eg: eg, NAMES.server: server},
        before=before,
        now=now,
        timeout_seconds=300,
        **kw,
    )


def test_ready_only_when_both_deployments_are_available() -> None:
    starting = observe(deployment(True), None, None, T0)
    assert starting.phase is SessionPhase.STARTING
    assert starting.message == "Deployment demo-jupyter does not exist"
    assert starting.url == "http://demo-jupyter.ns.svc:8888"
    assert starting.token_secret == "demo-session-token"
    still = observe(deployment(True), deployment(False), starting, T0 + timedelta(seconds=10))
    assert still.phase is SessionPhase.STARTING and still.since == starting.since
    ready = observe(deployment(True), deployment(True), still, T0 + timedelta(seconds=20))
    assert ready.phase is SessionPhase.READY
    assert ready.since == "2024-05-01T12:00:20Z"
    assert ready.kernels == ["python"]


def test_an_old_generation_is_not_available() -> None:
    stale = deployment(True)
    stale["metadata"]["generation"] = 3
    assert not session.available(stale)
    assert not session.available(None)


def test_not_ready_within_the_timeout_fails_with_the_reason() -> None:
    starting = observe(None, None, None, T0)
    late = T0 + timedelta(seconds=300)
    assert session.deadline_passed(starting, late, 300)
    assert not session.deadline_passed(starting, late - timedelta(seconds=1), 300)
    failed = observe(
        deployment(False, message="Deployment does not have minimum availability."), None, starting, late
    )
    assert failed.phase is SessionPhase.FAILED
    assert failed.reason == session.REASON_TIMEOUT
    assert failed.message == (
        "not Ready within 300 s: Deployment demo-eg: Deployment does not have minimum availability.; "
        "Deployment demo-jupyter does not exist"
    )
    # stays Failed (its clock does not restart) until the Deployments recover
    later = observe(deployment(False), deployment(True), failed, late + timedelta(seconds=5))
    assert later.phase is SessionPhase.FAILED and later.since == failed.since
    recovered = observe(deployment(True), deployment(True), later, late + timedelta(seconds=9))
    assert recovered.phase is SessionPhase.READY


def test_a_spec_change_restarts_the_clock() -> None:
    failed = observe(None, None, observe(None, None, None, T0), T0 + timedelta(seconds=301))
    assert failed.phase is SessionPhase.FAILED
    again = observe(None, None, failed, T0 + timedelta(seconds=400), restart_clock=True)
    assert again.phase is SessionPhase.STARTING and again.since == "2024-05-01T12:06:40Z"


def test_losing_availability_goes_back_to_starting() -> None:
    ready = observe(deployment(True), deployment(True), None, T0)
    lost = observe(deployment(False), deployment(True), ready, T0 + timedelta(seconds=60))
    assert lost.phase is SessionPhase.STARTING and lost.since == "2024-05-01T12:01:00Z"


def test_status_patch_clears_stale_fields_and_never_holds_a_token() -> None:
    patch = session.status_patch(session.stopped(T0))
    assert patch["session"]["phase"] == "Stopped"
    assert patch["session"]["reason"] == session.REASON_DISABLED
    assert patch["session"]["url"] is None and patch["session"]["tokenSecret"] is None
    ready = observe(deployment(True), deployment(True), None, T0)
    assert set(session.status_patch(ready)["session"]) == {
        "phase",
        "url",
        "tokenSecret",
        "kernels",
        "reason",
        "message",
        "since",
    }


def test_previous_ignores_a_hand_edited_status() -> None:
    assert session.previous({"session": {"phase": "Dancing"}}) is None
    assert session.previous({"stepCount": 2}) is None
    assert session.previous({"session": {"phase": "Ready"}}) == SessionStatus(phase=SessionPhase.READY)


def test_the_url_names_the_server_service() -> None:
    assert build.server_url(NAMES, "ns") == "http://demo-jupyter.ns.svc:8888"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (SessionStatus(phase=SessionPhase.STARTING), True),
        (SessionStatus(phase=SessionPhase.READY), True),
        (SessionStatus(phase=SessionPhase.FAILED, reason=session.REASON_TIMEOUT), True),
        (SessionStatus(phase=SessionPhase.FAILED, reason=session.REASON_INVALID), False),
        (SessionStatus(phase=SessionPhase.FAILED, reason=session.REASON_DOCKER_SECRET), False),
        (SessionStatus(phase=SessionPhase.STOPPED), False),
    ],
)
def test_only_reconciled_sessions_follow_their_deployments(status: SessionStatus, expected: bool) -> None:
    assert session.observable(status) is expected
