"""kopf handlers: ``kopf run -m orchest_operator.handlers`` (or ``orchest operator``) loads them all."""

from orchest_operator.handlers import pipelines, runs, startup

__all__ = ["pipelines", "runs", "startup"]
