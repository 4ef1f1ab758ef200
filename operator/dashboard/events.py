"""Live updates as server-sent events: each open page subscribes to the shared informers, and when what it
shows changed, it gets only the difference (``updates``). A step's log is streamed from ``pods/log``.

Every stream is GET, carries the same security headers as the pages, and holds JSON of rows the server
rendered and escaped, or log text the page inserts as text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from orchest_operator import naming
from orchest_operator.dashboard import job_views, pages, updates, views
from orchest_operator.dashboard.client import ApiError
from orchest_operator.dashboard.informers import Informer
from orchest_operator.dashboard.pages import SECURITY_HEADERS
from orchest_operator.dashboard.state import PODS, STATE, Dashboard, synced

COALESCE_SECONDS = 0.15
"""A burst of watch events (a wave of steps starting) becomes one update per page."""
KEEPALIVE_SECONDS = 15.0
LOG_TAIL_LINES = "10000"

Accept = Callable[[dict[str, Any]], bool]
Emit = Callable[[web.StreamResponse], Awaitable[bool]]


def _everything(obj: dict[str, Any]) -> bool:
    return True


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
    )
    await response.prepare(request)
    return response


async def send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())


async def stream(
    request: web.Request, subscriptions: Sequence[tuple[Informer, Accept]], emit: Emit
) -> web.StreamResponse:
    """Run ``emit`` once, then after each accepted change (a short pause gathers a burst into one
    message) until it returns True or the browser goes away; ping the browser while idle, so a closed tab
    is noticed."""
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()

    def listener(accept: Accept) -> Callable[[dict[str, Any]], None]:
        return lambda obj: changed.set() if accept(obj) else None

    unsubscribe = [informer.subscribe(listener(accept)) for informer, accept in subscriptions]
    try:
        while True:
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            await asyncio.sleep(COALESCE_SECONDS)
            changed.clear()
            if await emit(response):
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for stop in unsubscribe:
            stop()
    return response


def _dashboard(request: web.Request) -> Dashboard:
    return request.app[STATE]


def _list_stream(
    informer: Callable[[Dashboard], Informer],
    message: Callable[[Dashboard, updates.ListState], tuple[dict[str, Any] | None, updates.ListState]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The events of a list page: its rows that changed, appeared or went, and their order."""

    async def handler(request: web.Request) -> web.StreamResponse:
        dashboard = _dashboard(request)
        await synced(informer(dashboard))
        state = updates.ListState()

        async def emit(response: web.StreamResponse) -> bool:
            nonlocal state
            changed, state = message(dashboard, state)
            if changed:
                await send(response, "rows", changed)
            return False

        return await stream(request, [(informer(dashboard), _everything)], emit)

    return handler


runs_events = _list_stream(
    lambda d: d.runs, lambda d, s: updates.run_list(s, views.run_rows(d.runs.objects.values(), d.clock()))
)
pipelines_events = _list_stream(
    lambda d: d.pipelines,
    lambda d, s: updates.pipeline_list(s, views.pipeline_views(d.pipelines.objects.values())),
)
jobs_events = _list_stream(
    lambda d: d.jobs, lambda d, s: updates.job_list(s, job_views.job_rows(d.jobs.objects.values()))
)


def _names(request: web.Request) -> tuple[str, str, str]:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    return namespace, name, f"{namespace}/{name}"


def _owned_by(namespace: str, kind: str, name: str) -> Accept:
    def accept(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        refs = meta.get("ownerReferences") or []
        return meta.get("namespace") == namespace and any(
            r.get("kind") == kind and r.get("name") == name for r in refs
        )

    return accept


def _is(key: str) -> Accept:
    return lambda obj: views.key_of(obj) == key


async def run_events(request: web.Request) -> web.StreamResponse:
    """A run's page: the summary when it changed, and each step whose box or row changed."""
    dashboard = _dashboard(request)
    await synced(dashboard.runs, dashboard.pods)
    namespace, name, key = _names(request)
    label = naming.label_value(name)
    view = dashboard.run_view(key)
    # The page was rendered from the run at version ``rv``: if it changed since, send every row once.
    fresh = view is not None and view[0].resource_version == request.query.get("rv")
    state = view[1] if view is not None and fresh else updates.RunState()

    def pod_of_run(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return (
            meta.get("namespace") == namespace and (meta.get("labels") or {}).get(naming.LABEL_RUN) == label
        )

    async def emit(response: web.StreamResponse) -> bool:
        nonlocal state
        current = dashboard.run_view(key)
        if current is None:
            await send(response, "gone", {"run": key})
            return True
        message, state = updates.run_page(state, *current)
        if message:
            await send(response, "run", message)
        return False

    return await stream(request, [(dashboard.runs, _is(key)), (dashboard.pods, pod_of_run)], emit)


async def _sections(
    request: web.Request,
    subscriptions: Sequence[tuple[Informer, Accept]],
    render: Callable[[], dict[str, str] | None],
    initial: dict[str, str],
) -> web.StreamResponse:
    """Parts of a page re-rendered whole and sent when they changed; ``render`` returns None when the
    object is gone."""
    last = dict(initial)

    async def emit(response: web.StreamResponse) -> bool:
        rendered = render()
        if rendered is None:
            await send(response, "gone", {})
            return True
        sections: dict[str, str] = {}
        for element, html in rendered.items():
            message, last[element] = updates.section(last.get(element, ""), html, element)
            if message:
                sections.update(message["sections"])
        if sections:
            await send(response, "sections", {"sections": sections})
        return False

    return await stream(request, subscriptions, emit)


async def pipeline_events(request: web.Request) -> web.StreamResponse:
    """A Pipeline's page: its own part when the Pipeline changes, its runs when one of them does."""
    dashboard = _dashboard(request)
    await synced(dashboard.pipelines, dashboard.runs)
    namespace, name, key = _names(request)

    def of_pipeline(obj: dict[str, Any]) -> bool:
        spec = obj.get("spec") or {}
        return (obj.get("metadata") or {}).get("namespace") == namespace and (
            (spec.get("pipelineRef") or {}).get("name") == name
        )

    def render() -> dict[str, str] | None:
        pipeline = dashboard.pipelines.objects.get(key)
        if pipeline is None:
            return None
        runs = views.run_rows(
            views.runs_of(dashboard.runs.objects.values(), namespace, name), dashboard.clock()
        )
        return {
            "pipeline-body": pages.pipeline_body(views.pipeline_view(pipeline)),
            "pipeline-runs-section": pages.pipeline_runs(runs),
        }

    # What the page was rendered with, near enough: only what changes afterwards goes out.
    initial = render() or {}
    initial.pop("pipeline-runs-section", None)
    return await _sections(
        request, [(dashboard.pipelines, _is(key)), (dashboard.runs, of_pipeline)], render, initial
    )


async def job_events(request: web.Request) -> web.StreamResponse:
    """A PipelineJob's batches and combinations, re-sent whole when the job or one of its runs changes."""
    dashboard = _dashboard(request)
    await synced(dashboard.jobs, dashboard.runs)
    namespace, name, key = _names(request)
    batch = request.query.get("batch")

    def render() -> dict[str, str] | None:
        detail = dashboard.job_detail(key, batch)
        return None if detail is None else {"job-body": pages.job_body(detail)}

    subscriptions = [(dashboard.jobs, _is(key)), (dashboard.runs, _owned_by(namespace, views.JOB_KIND, name))]
    return await _sections(request, subscriptions, render, render() or {})


# --- a step's log ---------------------------------------------------------------------------------------


async def step_log(request: web.Request) -> web.StreamResponse:
    """A step's log from ``pods/log``, followed while the pod runs, as ``text`` events; ``info`` says
    plainly why there is none; ``end`` tells the page not to reconnect."""
    dashboard = _dashboard(request)
    await synced(dashboard.runs, dashboard.pods)
    namespace, _, key = _names(request)
    step = request.match_info["step"]
    response = await _open_stream(request)
    run = dashboard.runs.objects.get(key)
    try:
        if run is None:
            await send(response, "info", f"No PipelineRun {key}.")
        else:
            pod, why = views.step_log_target(
                run, step, dashboard.pod_index(), pods_known=dashboard.pods.synced.is_set()
            )
            if pod is None:
                await send(response, "info", why)
            else:
                await _stream_log(dashboard, response, namespace, pod, step)
        await send(response, "end", {})
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _stream_log(
    dashboard: Dashboard, response: web.StreamResponse, namespace: str, pod: str, step: str
) -> None:
    phase = ((dashboard.pods.objects.get(f"{namespace}/{pod}") or {}).get("status") or {}).get("phase")
    follow = phase in (None, "Pending", "Running")
    await send(response, "info", f"Pod {pod}" + (" (following while it runs)" if follow else ""))
    params = {"tailLines": LOG_TAIL_LINES, "container": "step"}
    if follow:
        params["follow"] = "true"
    path = f"{PODS.path(namespace)}/{pod}/log"
    try:
        async for text in dashboard.client.text_stream(path, params):
            await send(response, "text", text)
    except ApiError as error:
        if error.status == 404:
            await send(
                response, "info", f"The pod {pod} of step {step} is gone: its log is no longer available."
            )
        elif error.status == 400 and "waiting to start" in error.message:
            await send(response, "info", f"Step {step}'s container has not started yet ({error.message}).")
        else:
            await send(response, "info", f"The log could not be read: {error.message} (HTTP {error.status})")
