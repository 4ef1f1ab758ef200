"""kopf handlers: ``kopf run -m orchest_operator.handlers`` (or ``orchest operator``) loads them all."""

from orchest_operator.handlers import pipelines, runs, session, startup

__all__ = ["pipelines", "runs", "session", "startup"]
