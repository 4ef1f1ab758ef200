"""kopf handlers: ``kopf run -m orchest_operator.handlers`` (or ``orchest operator``) loads them all."""

from orchest_operator.handlers import jobs, pipelines, runs, session, startup

__all__ = ["jobs", "pipelines", "runs", "session", "startup"]
