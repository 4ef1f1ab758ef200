"""Prometheus metrics of the operator, served by ``orchest operator --metrics-port``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RUNS_FINISHED = Counter("orchest_runs_finished_total", "PipelineRuns that reached a final phase", ["phase"])
STEPS_STARTED = Counter("orchest_steps_started_total", "Step Jobs created")
STEPS_FINISHED = Counter("orchest_steps_finished_total", "Steps recorded as Succeeded or Failed")
REACTION = Histogram(
    "orchest_reaction_seconds",
    "From a watch event about a run (e.g. a step pod succeeded) to the Jobs it made ready being created",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
