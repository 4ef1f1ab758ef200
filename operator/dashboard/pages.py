"""View models → HTML. Pure, and the only place the dashboard writes markup.

Every string that came from the cluster goes through :func:`e` (HTML-escaped, quotes included) before it
reaches a page or a live update; the pages carry no inline script or style, so the Content-Security-Policy
the server sends can forbid both.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from orchest_operator.dashboard import svg
from orchest_operator.dashboard.job_views import JobDetail, JobRow
from orchest_operator.dashboard.views import (
    PipelineView,
    RunDetail,
    RunRow,
    StepRow,
    format_duration,
    format_time,
)

STATIC_VERSION = "1"
# The pages hold no inline script or style and load nothing from elsewhere, so the policy forbids both.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def e(value: object) -> str:
    """HTML-escaped text of ``value`` (None is empty)."""
    return "" if value is None else escape(str(value), quote=True)


def path(*parts: str) -> str:
    """A URL path of cluster names, each percent-encoded (names are DNS labels, but never trusted)."""
    return "/" + "/".join(quote(p, safe="") for p in parts)


def run_url(namespace: str, name: str) -> str:
    return path("runs", namespace, name)


def pipeline_url(namespace: str, name: str) -> str:
    return path("pipelines", namespace, name)


def badge(phase: str | None, title: str = "") -> str:
    if phase is None:
        return '<span class="badge phase-none">not selected</span>'
    hint = f' title="{e(title)}"' if title else ""
    return f'<span class="badge {svg.phase_class(phase)}"{hint}>{e(phase)}</span>'


def _duration(duration: float | None, start: str | None, running: bool, tag: str = "td") -> str:
    """A duration. While running, the page's script counts it from ``data-since``: the markup holds no
    time-dependent text, so a running step's row only changes (and is only re-sent) when its state does."""
    if running and start:
        return f'<{tag} class="duration" data-since="{e(start)}"></{tag}>'
    return f'<{tag} class="duration">{e(format_duration(duration))}</{tag}>'


def document(
    title: str, body: str, *, active: str, namespaces: str, events: str = "", kinds: Sequence[str] = ()
) -> str:
    """A whole page: the navigation, ``body``, and the script that keeps it live from ``events``."""
    nav = [("runs", "/runs", "Runs"), ("pipelines", "/pipelines", "Pipelines")]
    if "pipelinejobs" in kinds:
        nav.append(("jobs", "/jobs", "PipelineJobs"))
    links = "".join(
        f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>' for key, href, label in nav
    )
    data = f' data-events="{e(events)}"' if events else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{e(title)} · orchest</title>"
        f'<link rel="stylesheet" href="/static/dashboard.css?v={STATIC_VERSION}">'
        f'<script src="/static/dashboard.js?v={STATIC_VERSION}" defer></script>'
        f"</head><body{data}>"
        f'<header><a class="brand" href="/runs">orchest</a><nav>{links}</nav>'
        f'<span class="scope">{e(namespaces)}</span>'
        '<span id="live" class="live" title="live updates">●</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


# --- runs ---------------------------------------------------------------------------------------------


RUN_COLUMNS = ("Run", "Namespace", "Pipeline", "Phase", "Progress", "Started", "Duration", "PipelineJob")


def run_list_row(row: RunRow) -> str:
    job = ""
    if row.job:
        link = e(path("jobs", row.namespace, row.job))
        job = f'<a href="{link}">{e(row.job)}</a><div class=params>{e(row.job_parameters)}</div>'
    return (
        f'<tr id="run-{e(row.key)}" data-key="{e(row.key)}" data-phase="{e(row.phase)}">'
        f'<td><a href="{e(run_url(row.namespace, row.name))}">{e(row.name)}</a></td>'
        f"<td>{e(row.namespace)}</td>"
        f'<td><a href="{e(pipeline_url(row.namespace, row.pipeline))}">{e(row.pipeline)}</a></td>'
        f"<td>{badge(row.phase, row.message)}</td>"
        f"<td>{e(row.progress)}</td>"
        f"<td>{e(format_time(row.start))}</td>"
        f"{_duration(row.duration, row.start, row.phase == 'Running')}"
        f"<td>{job}</td>"
        "</tr>"
    )


def _table(columns: Iterable[str], body_id: str, rows: str, empty: str) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    return (
        f'<table class="list"><thead><tr>{head}</tr></thead><tbody id="{e(body_id)}">{rows}</tbody></table>'
        f'<p class="empty" id="{e(body_id)}-empty"{" hidden" if rows else ""}>{e(empty)}</p>'
    )


def runs_page(rows: Sequence[RunRow], *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    body = (
        "<h1>PipelineRuns</h1>"
        '<p><input id="filter" class="filter" type="search" data-table="runs" '
        'placeholder="Filter by name, namespace, pipeline or phase" aria-label="Filter runs"></p>'
    ) + _table(RUN_COLUMNS, "runs", "".join(run_list_row(r) for r in rows), "No PipelineRuns yet.")
    return document("Runs", body, active="runs", namespaces=namespaces, events="/runs/events", kinds=kinds)


def run_summary(detail: RunDetail) -> str:
    row = detail.row
    items = [
        ("Phase", badge(row.phase)),
        ("Progress", e(row.progress)),
        ("Pipeline", f'<a href="{e(pipeline_url(row.namespace, row.pipeline))}">{e(row.pipeline)}</a>'),
        ("Started", e(format_time(row.start))),
        ("Finished", e(format_time(row.completion))),
        ("Duration", _duration(row.duration, row.start, not row.finished, "span")),
        ("Steps", f"{detail.selected} of {len(detail.step_rows)} selected"),
    ]
    if row.parameters:
        items.append(("Parameters", f"<code>{e(row.parameters)}</code>"))
    if row.failure_policy:
        items.append(("Failure policy", e(row.failure_policy)))
    if row.rerun_of:
        items.append(
            ("Rerun of", f'<a href="{e(run_url(row.namespace, row.rerun_of))}">{e(row.rerun_of)}</a>')
        )
    if row.job:
        items.append(("PipelineJob", f'<a href="{e(path("jobs", row.namespace, row.job))}">{e(row.job)}</a>'))
    cells = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in items)
    conditions = "".join(
        f"<li><b>{e(kind)}={e(status)}</b> {e(reason)}: {e(message)}</li>"
        for kind, status, reason, message in detail.conditions
    )
    return f"<dl>{cells}</dl>" + (f'<ul class="conditions">{conditions}</ul>' if conditions else "")


STEP_COLUMNS = ("Step", "Phase", "Attempts", "Started", "Duration", "Job", "Pod", "Message", "Failure")


def step_row_html(row: StepRow) -> str:
    if row.pod:
        pod = e(row.pod)
    elif row.pod_gone:
        pod = '<span class="gone">gone</span>'
    else:
        pod = ""
    failure = ""
    if row.failure_ename or row.failure_evalue or row.failure_cell:
        cell = f"cell {e(row.failure_cell)}: " if row.failure_cell else ""
        failure = (
            f'<div class="failure">{cell}<span class="ename">{e(row.failure_ename)}</span>'
            f'<span class="evalue">{e(row.failure_evalue)}</span></div>'
        )
    log = f'<a class="log-link" href="#step-{e(row.name)}">log</a>' if row.job else ""
    return (
        f'<tr id="step-{e(row.name)}" data-step="{e(row.name)}" class="{svg.phase_class(row.phase)}">'
        f'<td><span class="name">{e(row.name)}</span> <span class="file">{e(row.file)}</span> {log}</td>'
        f"<td>{badge(row.phase)}</td>"
        f"<td>{e(row.attempts)}</td>"
        f"<td>{e(format_time(row.start))}</td>"
        f"{_duration(row.duration, row.start, row.running)}"
        f"<td>{e(row.job)}</td>"
        f"<td>{pod}</td>"
        f'<td class="message">{_message(row)}</td>'
        f"<td>{failure}</td>"
        "</tr>"
    )


def _message(row: StepRow) -> str:
    parts = []
    if row.reason:
        parts.append(f'<span class="reason">{e(row.reason)}</span>')
    if row.message:
        parts.append(e(row.message))
    if row.cached_from:
        # A relative link: the run page is /runs/<namespace>/<run>, and a cached execution comes from a
        # run of the same Pipeline, so of the same namespace.
        link = e(quote(row.cached_from, safe=""))
        parts.append(f'cached from <a class="cached-from" href="{link}">{e(row.cached_from)}</a>')
    return " ".join(parts)


def run_graph(detail: RunDetail) -> str:
    phases = {r.name: r.phase for r in detail.step_rows if r.phase is not None}
    links = {r.name: f"#step-{r.name}" for r in detail.step_rows}
    return svg.render(detail.steps, phases, title=detail.row.name, links=links)


def run_page(detail: RunDetail, *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    row = detail.row
    events = run_url(row.namespace, row.name) + f"/events?rv={quote(detail.resource_version)}"
    steps = "".join(step_row_html(r) for r in detail.step_rows)
    body = (
        f'<h1>PipelineRun <span class="name">{e(row.name)}</span> '
        f'<span class="ns">in {e(row.namespace)}</span></h1>'
        f'<p id="gone-banner" class="banner" hidden>This PipelineRun was deleted.</p>'
        f'<section id="summary" class="summary">{run_summary(detail)}</section>'
        f'<section class="graph">{run_graph(detail)}</section>'
        '<section class="steps"><h2>Steps</h2>'
        + _table(STEP_COLUMNS, "steps", steps, "This run has no steps yet.")
        + "</section>"
        '<section id="log-panel" class="log" hidden><h2>Log of <span id="log-step"></span></h2>'
        '<p id="log-info" class="info"></p><pre id="log"></pre></section>'
    )
    return document(row.name, body, active="runs", namespaces=namespaces, events=events, kinds=kinds)


# --- pipelines ----------------------------------------------------------------------------------------


def _session_cell(view: PipelineView) -> str:
    if not view.session_enabled:
        return '<span class="badge phase-none">off</span>'
    return f'<span class="badge session-{e(view.session_phase.lower())}">{e(view.session_phase)}</span>'


PIPELINE_COLUMNS = ("Pipeline", "Namespace", "Steps", "Parameters", "Session", "Last run")


def pipeline_list_row(v: PipelineView) -> str:
    last = f'<a href="{e(run_url(v.namespace, v.last_run))}">{e(v.last_run)}</a>' if v.last_run else ""
    return (
        f'<tr id="pipeline-{e(v.key)}" data-key="{e(v.key)}">'
        f'<td><a href="{e(pipeline_url(v.namespace, v.name))}">{e(v.name)}</a></td>'
        f"<td>{e(v.namespace)}</td><td>{v.step_count}</td>"
        f"<td>{e(', '.join(f'{k}={val}' for k, val in v.parameters))}</td>"
        f"<td>{_session_cell(v)}</td><td>{last}</td></tr>"
    )


def pipelines_page(views: Sequence[PipelineView], *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    rows = "".join(pipeline_list_row(v) for v in views)
    body = "<h1>Pipelines</h1>" + _table(PIPELINE_COLUMNS, "pipelines", rows, "No Pipelines yet.")
    return document(
        "Pipelines", body, active="pipelines", namespaces=namespaces, events="/pipelines/events", kinds=kinds
    )


def pipeline_body(view: PipelineView) -> str:
    """What the Pipeline itself shows: its drawing, session, steps and parameters."""
    params = "".join(f"<tr><td>{e(k)}</td><td><code>{e(v)}</code></td></tr>" for k, v in view.parameters)
    steps = "".join(
        f"<tr><td>{e(s.name)}</td><td>{e(s.file)}</td><td>{e(s.depends_on)}</td><td>{e(s.image)}</td>"
        f"<td>{e(s.retries)}</td><td>{e(s.timeout)}</td><td>{e(s.parameters)}</td></tr>"
        for s in view.steps
    )
    session = f"<p>Session: {_session_cell(view)} {e(view.session_message)}</p>"
    if view.port_forward:
        session += (
            "<p>Open it with</p>"
            f"<pre class=command>{e(view.port_forward)}</pre>"
            f"<p>then <code>http://localhost:8888/lab?token=</code> followed by the token from</p>"
            f"<pre class=command>{e(view.token_command)}</pre>"
        )
    return (
        f'<section class="graph">{svg.render(view.graph, title=view.name)}</section>'
        f"<section><h2>Interactive session</h2>{session}</section>"
        "<section><h2>Steps</h2>"
        + _table(
            ("Step", "File", "Depends on", "Image", "Retries", "Timeout", "Parameters"),
            "pipeline-steps",
            steps,
            "No steps.",
        )
        + "</section><section><h2>Parameters</h2>"
        + _table(("Name", "Value"), "pipeline-parameters", params, "No parameters.")
        + "</section>"
    )


def pipeline_runs(runs: Sequence[RunRow]) -> str:
    return "<h2>Runs</h2>" + _table(
        RUN_COLUMNS, "pipeline-runs", "".join(run_list_row(r) for r in runs), "No runs of it."
    )


def pipeline_page(
    view: PipelineView, runs: Sequence[RunRow], *, namespaces: str, kinds: Sequence[str] = ()
) -> str:
    body = (
        f'<h1>Pipeline <span class="name">{e(view.name)}</span> '
        f'<span class="ns">in {e(view.namespace)}</span></h1>'
        '<p id="gone-banner" class="banner" hidden>This Pipeline was deleted.</p>'
        f'<div id="pipeline-body">{pipeline_body(view)}</div>'
        f'<section id="pipeline-runs-section">{pipeline_runs(runs)}</section>'
    )
    events = pipeline_url(view.namespace, view.name) + "/events"
    return document(view.name, body, active="pipelines", namespaces=namespaces, events=events, kinds=kinds)


# --- PipelineJobs -------------------------------------------------------------------------------------


def job_url(namespace: str, name: str) -> str:
    return path("jobs", namespace, name)


def _job_state(row: JobRow) -> str:
    if row.problem:
        return f'<span class="badge phase-failed">not schedulable</span> {e(row.problem)}'
    if row.suspended:
        return '<span class="badge phase-none">suspended</span>'
    return '<span class="badge phase-succeeded">active</span>'


def job_list_row(row: JobRow) -> str:
    return (
        f'<tr id="job-{e(row.key)}" data-key="{e(row.key)}">'
        f'<td><a href="{e(job_url(row.namespace, row.name))}">{e(row.name)}</a></td>'
        f"<td>{e(row.namespace)}</td>"
        f'<td><a href="{e(pipeline_url(row.namespace, row.pipeline))}">{e(row.pipeline)}</a></td>'
        f"<td><code>{e(row.schedule)}</code></td><td>{_job_state(row)}</td>"
        f"<td>{row.combinations}</td><td>{row.active_runs}</td>"
        f"<td>{e(row.last_batch)} {badge(row.last_batch_phase) if row.last_batch_phase else ''}</td>"
        f"<td>{e(format_time(row.next_schedule))}</td>"
        "</tr>"
    )


JOB_COLUMNS = (
    "PipelineJob",
    "Namespace",
    "Pipeline",
    "Schedule",
    "State",
    "Combinations",
    "Active runs",
    "Last batch",
    "Next tick",
)


def jobs_page(rows: Sequence[JobRow], *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    body = "<h1>PipelineJobs</h1>" + _table(
        JOB_COLUMNS, "jobs", "".join(job_list_row(r) for r in rows), "No PipelineJobs yet."
    )
    return document(
        "PipelineJobs", body, active="jobs", namespaces=namespaces, events="/jobs/events", kinds=kinds
    )


def job_body(detail: JobDetail) -> str:
    """Everything of a job's page that changes: its batches and the chosen batch's combinations."""
    row = detail.row
    batches = "".join(
        f'<tr data-key="{e(b.id)}"{" class=selected" if b.id == detail.batch else ""}>'
        f'<td><a href="?batch={e(quote(b.id, safe=""))}">{e(b.id)}</a></td><td>{e(b.trigger)}</td>'
        f"<td>{e(format_time(b.scheduled))}</td><td>{badge(b.phase)}</td><td>{b.runs}</td>"
        f"<td>{e(b.counts)}</td><td>{e(format_time(b.completion))}</td><td>{e(b.message)}</td></tr>"
        for b in detail.batches
    )
    combos = "".join(
        f'<tr data-key="{c.index}"><td data-value="{c.index}">{c.index}</td>'
        + "".join(f'<td data-value="{e(sort)}"><code>{e(text)}</code></td>' for text, sort in c.values)
        + f'<td><a href="{e(run_url(row.namespace, c.run))}">{e(c.run)}</a></td>'
        f'<td data-value="{e(c.phase or "")}">{badge(c.phase or "Pending")}</td>'
        f'<td data-value="{"" if c.duration is None else round(c.duration)}">'
        f"{e(format_duration(c.duration))}</td></tr>"
        for c in detail.combinations
    )
    columns = ("#", *detail.swept, "Run", "Phase", "Duration")
    head = "".join(f'<th><button type="button" class="sort">{e(c)}</button></th>' for c in columns)
    return (
        f'<p>Pipeline <a href="{e(pipeline_url(row.namespace, row.pipeline))}">{e(row.pipeline)}</a>, '
        f"schedule <code>{e(row.schedule)}</code>, {_job_state(row)}; "
        f"last tick {e(format_time(row.last_schedule)) or 'none'}, "
        f"next {e(format_time(row.next_schedule)) or 'none'}</p>"
        "<h2>Batches</h2>"
        + _table(
            ("Batch", "Trigger", "Scheduled", "Phase", "Runs", "Runs by phase", "Finished", "Message"),
            "batches",
            batches,
            "No batch yet.",
        )
        + f"<h2>Combinations of batch {e(detail.batch)}</h2>"
        f'<table class="list sortable"><thead><tr>{head}</tr></thead>'
        f'<tbody id="combinations">{combos}</tbody></table>'
        + ("" if combos else '<p class="empty">No runs in this batch.</p>')
    )


def job_page(detail: JobDetail, events: str, *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    row = detail.row
    params = ", ".join(f"{k}={v}" for k, v in detail.parameters)
    body = (
        f'<h1>PipelineJob <span class="name">{e(row.name)}</span> '
        f'<span class="ns">in {e(row.namespace)}</span></h1>'
        + (f"<p>Parameters of every run: <code>{e(params)}</code></p>" if params else "")
        + f'<section id="job-body">{job_body(detail)}</section>'
    )
    return document(row.name, body, active="jobs", namespaces=namespaces, events=events, kinds=kinds)


def not_found_page(what: str, *, namespaces: str, kinds: Sequence[str] = ()) -> str:
    return document(
        "Not found",
        f'<h1>Not found</h1><p class="info">{e(what)}</p>',
        active="",
        namespaces=namespaces,
        kinds=kinds,
    )


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
