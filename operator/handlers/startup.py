"""One place that configures kopf and builds the run controller the other handlers share."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from orchest_operator import aiokube, echoes, kube, watching
from orchest_operator.builders.job import JobOptions
from orchest_operator.jobs.controller import JobController
from orchest_operator.models import GROUP
from orchest_operator.run_controller import RunController
from orchest_operator.settings import Settings

_controller: RunController | None = None
_job_controller: JobController | None = None


def controller() -> RunController:
    if _controller is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return _controller


def job_controller() -> JobController:
    if _job_controller is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return _job_controller


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _controller, _job_controller
    config = Settings.from_env()
    # Progress and diff base in annotations of our own prefix: the status schema stays ours alone.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.posting.level = logging.INFO
    watching.configure(settings)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    try:
        api = aiokube.client()
    except kube.UnsupportedCredentials as err:
        raise kopf.PermanentError(str(err)) from None
    _controller = RunController(
        api=api,
        options=JobOptions(
            default_image=config.default_step_image,
            priority_classes=config.priority_classes,
        ),
        jobs=lambda key: (),
        pods=lambda key: (),
        step_events_limit=config.step_events_max_steps,
        check_after=config.stuck_check_after_seconds,
        check_every=config.stuck_check_every_seconds,
    )
    echoes.install()
    echoes.skip(watching.JOBS, _controller.is_own_create)
    _job_controller = JobController(api=kube.client())


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    global _controller, _job_controller
    echoes.clear()
    if _controller is not None:
        await _controller.close()
        _controller = None
    if _job_controller is not None:
        await _job_controller.close()
        _job_controller = None
