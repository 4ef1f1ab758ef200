"""The dashboard benchmark's workload is a run the operator could have written, and its server side runs."""

from __future__ import annotations

from bench import dashboard
from orchest_operator.dag import Dag
from orchest_operator.models import PipelineRunStatus, PipelineSpec


def test_the_workload_is_a_valid_run_of_a_valid_pipeline() -> None:
    body, status = dashboard.run_object(120, width=10)
    parsed = PipelineRunStatus.model_validate(status)
    assert parsed.snapshot is not None
    Dag.of(PipelineSpec.model_validate(parsed.snapshot.pipeline.wire()))
    phases = [s.phase.value for s in parsed.steps.values()]
    assert {"Succeeded", "Running", "Pending", "Failed"} <= set(phases) and len(phases) == 120
    assert body["metadata"]["namespace"] == dashboard.NAMESPACE


def test_server_figures() -> None:
    body, status = dashboard.run_object(50, width=5)
    figures = dashboard.server_figures(body, status, repeat=1)
    assert figures["update_message_bytes"] < figures["page_bytes_gzipped"] < figures["page_bytes"]
