"""The operator's settings from its environment: defaults, overrides and refused values."""

from __future__ import annotations

import pytest

from orchest_operator.settings import Settings, SettingsError, release


def test_defaults_name_this_release_images() -> None:
    settings = Settings.from_env({})
    assert settings.step_runner_image == f"ghcr.io/orchest-operator/orchest-step-runner:{release()}"
    assert settings.default_step_image == settings.step_runner_image
    assert settings.jupyter_server_image == f"ghcr.io/orchest-operator/orchest-jupyter-server:{release()}"
    assert settings.eg_image == "elyra/enterprise-gateway:3.2.3"
    assert settings.session_timeout_seconds == 300
    assert settings.priority_classes is True


def test_every_variable_overrides_its_default() -> None:
    settings = Settings.from_env(
        {
            "ORCHEST_STEP_RUNNER_IMAGE": "reg/runner:1",
            "ORCHEST_DEFAULT_STEP_IMAGE": " reg/science:2 ",
            "ORCHEST_EG_IMAGE": "reg/eg:3",
            "ORCHEST_JUPYTER_SERVER_IMAGE": "reg/js:4",
            "ORCHEST_SESSION_TIMEOUT_SECONDS": "600",
            "ORCHEST_KERNEL_LAUNCH_TIMEOUT_SECONDS": "90",
            "ORCHEST_KERNEL_CULL_IDLE_SECONDS": "0",
            "ORCHEST_KERNEL_CULL_INTERVAL_SECONDS": "30",
            "ORCHEST_PRIORITY_CLASSES": "False",
            "ORCHEST_STEP_EVENTS_MAX_STEPS": "0",
            "ORCHEST_STUCK_CHECK_AFTER_SECONDS": "2.5",
            "ORCHEST_STUCK_CHECK_EVERY_SECONDS": "30",
        }
    )
    assert settings == Settings(
        step_runner_image="reg/runner:1",
        default_step_image="reg/science:2",
        eg_image="reg/eg:3",
        jupyter_server_image="reg/js:4",
        session_timeout_seconds=600,
        kernel_launch_timeout_seconds=90,
        kernel_cull_idle_seconds=0,
        kernel_cull_interval_seconds=30,
        priority_classes=False,
        step_events_max_steps=0,
        stuck_check_after_seconds=2.5,
        stuck_check_every_seconds=30.0,
    )


def test_default_step_image_follows_a_custom_step_runner() -> None:
    assert (
        Settings.from_env({"ORCHEST_STEP_RUNNER_IMAGE": "reg/runner:1"}).default_step_image == "reg/runner:1"
    )


def test_empty_variables_keep_the_defaults() -> None:
    assert Settings.from_env({"ORCHEST_EG_IMAGE": "", "ORCHEST_SESSION_TIMEOUT_SECONDS": " "}) == Settings()


def test_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_SESSION_TIMEOUT_SECONDS", "42")
    assert Settings.from_env().session_timeout_seconds == 42


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORCHEST_SESSION_TIMEOUT_SECONDS", "soon", "must be a positive whole number, got 'soon'"),
        ("ORCHEST_SESSION_TIMEOUT_SECONDS", "0", "must be a positive whole number, got '0'"),
        ("ORCHEST_SESSION_TIMEOUT_SECONDS", "-5", "must be a positive whole number, got '-5'"),
        ("ORCHEST_KERNEL_CULL_IDLE_SECONDS", "-1", "must be a non-negative whole number, got '-1'"),
        ("ORCHEST_KERNEL_LAUNCH_TIMEOUT_SECONDS", "0", "must be a positive whole number, got '0'"),
        ("ORCHEST_PRIORITY_CLASSES", "maybe", "ORCHEST_PRIORITY_CLASSES must be true or false, got 'maybe'"),
        ("ORCHEST_EG_IMAGE", "reg/eg 3", "ORCHEST_EG_IMAGE must be an image reference without spaces"),
        ("ORCHEST_STEP_EVENTS_MAX_STEPS", "-1", "must be a non-negative whole number, got '-1'"),
        ("ORCHEST_STEP_EVENTS_MAX_STEPS", "lots", "must be a non-negative whole number, got 'lots'"),
        ("ORCHEST_STUCK_CHECK_AFTER_SECONDS", "0", "must be a positive number of seconds, got '0'"),
        ("ORCHEST_STUCK_CHECK_AFTER_SECONDS", "soon", "must be a positive number of seconds, got 'soon'"),
        ("ORCHEST_STUCK_CHECK_EVERY_SECONDS", "nan", "must be a positive number of seconds, got 'nan'"),
        ("ORCHEST_STUCK_CHECK_EVERY_SECONDS", "inf", "must be a positive number of seconds, got 'inf'"),
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert message in str(err.value)
    assert name in str(err.value)


def test_lease_timings_default_to_kube_controller_managers_and_take_fractions() -> None:
    timings = Settings.from_env({}).lease_timings()
    assert (timings.lease_duration, timings.renew_deadline, timings.retry_period) == (15, 10, 2)
    short = Settings.from_env(
        {
            "ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS": "3",
            "ORCHEST_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "2",
            "ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "0.25",
        }
    ).lease_timings()
    assert (short.lease_duration, short.renew_deadline, short.retry_period) == (3, 2, 0.25)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "soon"}, "must be a positive number of seconds"),
        ({"ORCHEST_LEADER_ELECTION_RETRY_PERIOD_SECONDS": "-1"}, "must be a positive number of seconds"),
        ({"ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS": "nan"}, "must be a positive number of seconds"),
        ({"ORCHEST_LEADER_ELECTION_LEASE_DURATION_SECONDS": "5"}, "must be shorter than the lease duration"),
    ],
)
def test_lease_timings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
