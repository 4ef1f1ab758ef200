"""What a live page needs to hear: the difference between what it shows and what the cluster holds now.

Pure. A connection keeps the last state it sent (rendered rows by key); each watch event is folded into a
new rendering and only the rows that changed go out, so a 1000-step run whose one step finishes sends
one row and one box, not the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchest_operator.dashboard import pages, svg
from orchest_operator.dashboard.job_views import JobRow
from orchest_operator.dashboard.views import PipelineView, RunDetail, RunRow


@dataclass
class ListState:
    """The rows a run list shows: key → rendered row, in display order."""

    rows: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


def rows(
    state: ListState, rendered: Sequence[tuple[str, str]], table: str
) -> tuple[dict[str, Any] | None, ListState]:
    """(message or None, new state) for the list ``table``: changed rows by key, removed keys, and the
    order when it changed."""
    by_key = dict(rendered)
    order = [key for key, _ in rendered]
    changed = {k: html for k, html in by_key.items() if state.rows.get(k) != html}
    removed = [k for k in state.rows if k not in by_key]
    message: dict[str, Any] = {}
    if changed:
        message["rows"] = changed
    if removed:
        message["removed"] = removed
    if order != state.order:
        message["order"] = order
    if message:
        message["table"] = table
    return (message or None), ListState(rows=by_key, order=order)


def run_list(state: ListState, runs: Sequence[RunRow]) -> tuple[dict[str, Any] | None, ListState]:
    return rows(state, [(r.key, pages.run_list_row(r)) for r in runs], "runs")


def job_list(state: ListState, jobs: Sequence[JobRow]) -> tuple[dict[str, Any] | None, ListState]:
    return rows(state, [(r.key, pages.job_list_row(r)) for r in jobs], "jobs")


def pipeline_list(state: ListState, views: Sequence[PipelineView]) -> tuple[dict[str, Any] | None, ListState]:
    return rows(state, [(v.key, pages.pipeline_list_row(v)) for v in views], "pipelines")


def section(last: str, html: str, element: str) -> tuple[dict[str, Any] | None, str]:
    """A part of a page re-rendered whole (a job's batches and combinations), sent when it changed."""
    return (None if html == last else {"sections": {element: html}}), html


@dataclass
class RunState:
    """What a run page shows: its summary and, per step, its phase and rendered row."""

    summary: str = ""
    steps: dict[str, tuple[str | None, str]] = field(default_factory=dict)


def run_state(detail: RunDetail) -> RunState:
    return RunState(
        summary=pages.run_summary(detail),
        steps={r.name: (r.phase, pages.step_row_html(r)) for r in detail.step_rows},
    )


def step_change(name: str, file: str, phase: str | None, row: str) -> dict[str, Any]:
    fill, stroke = svg.colours(phase)
    return {
        "phase": phase or "",
        "cls": svg.phase_class(phase),
        "fill": fill,
        "stroke": stroke,
        "title": svg.step_title(name, file, phase),
        "row": row,
    }


def run_page(
    state: RunState, detail: RunDetail, new: RunState | None = None
) -> tuple[dict[str, Any] | None, RunState]:
    """(message or None, new state): the summary if it changed and each step whose row changed. ``new``
    is ``run_state(detail)`` when the caller has it already (pages of one run share it)."""
    new = new or run_state(detail)
    files: Mapping[str, str] = {s.name: s.file for s in detail.steps}
    message: dict[str, Any] = {}
    if new.summary != state.summary:
        message["summary"] = new.summary
    steps = {
        name: step_change(name, files.get(name, ""), phase, row)
        for name, (phase, row) in new.steps.items()
        if state.steps.get(name) != (phase, row)
    }
    if steps:
        message["steps"] = steps
    if set(new.steps) != set(state.steps) and state.steps:
        message["reload"] = True  # the run's snapshot appeared or changed shape: redraw the page
    return (message or None), new
