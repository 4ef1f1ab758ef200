"""The dashboard's web server: GET routes only, pages from the informers, live updates as server-sent events.

Every page is rendered from the informers' copies (never a request to the API server per page view);
``pods/log`` is the one thing read per request, because a log is asked for by one person at a time. No
credential is ever written into a response: the browser sees HTML, JSON of rendered rows and log text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from orchest_operator import naming
from orchest_operator.dashboard import pages, updates, views
from orchest_operator.dashboard.client import ApiClient, ApiError, Resource
from orchest_operator.dashboard.informers import Informer
from orchest_operator.models import GROUP, VERSION

log = logging.getLogger(__name__)

RUNS = Resource(GROUP, VERSION, "pipelineruns")
PIPELINES = Resource(GROUP, VERSION, "pipelines")
JOBS = Resource(GROUP, VERSION, "pipelinejobs")
PODS = Resource("", "v1", "pods")

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
COALESCE_SECONDS = 0.15
"""A burst of watch events (a wave of steps starting) becomes one update per page."""
KEEPALIVE_SECONDS = 15.0
VIEW_CACHE_SIZE = 32
"""Runs whose rendered rows are kept for their open pages."""
LOG_TAIL_LINES = "10000"
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}

Clock = Callable[[], datetime.datetime]
STATE: web.AppKey[Dashboard] = web.AppKey("dashboard")


class Dashboard:
    """The informers every page reads and the facts the pages share."""

    def __init__(self, client: ApiClient, namespaces: Sequence[str] | None, clock: Clock = pages.now) -> None:
        self.client = client
        self.namespaces = list(namespaces) if namespaces else None
        self.clock = clock
        self.runs = Informer(client, RUNS, self.namespaces)
        self.pipelines = Informer(client, PIPELINES, self.namespaces)
        self.jobs = Informer(client, JOBS, self.namespaces)
        # Only step pods (the label every step's pod template carries), and only what the pages read.
        self.pods = Informer(
            client, PODS, self.namespaces, label_selector=naming.LABEL_RUN, keep=views.pod_summary
        )
        self.informers = (self.runs, self.pipelines, self.jobs, self.pods)
        self._views: dict[str, tuple[tuple[str, int], views.RunDetail, updates.RunState]] = {}

    @property
    def scope(self) -> str:
        return "all namespaces" if self.namespaces is None else "namespace " + ", ".join(self.namespaces)

    @property
    def kinds(self) -> list[str]:
        return [i.resource.plural for i in self.informers if i.synced.is_set() and not i.absent]

    def pod_index(self) -> views.PodIndex:
        return views.PodIndex(self.pods.objects.values())

    def run_detail(self, key: str) -> views.RunDetail | None:
        run = self.runs.objects.get(key)
        if run is None:
            return None
        return views.run_detail(run, self.pod_index(), self.clock(), pods_known=self.pods.synced.is_set())

    def run_view(self, key: str) -> tuple[views.RunDetail, updates.RunState] | None:
        """A run's detail and rendered rows, shared by every page of that run until the run or a pod
        changes: ten tabs on a 1000-step run render it once per change, not ten times."""
        run = self.runs.objects.get(key)
        if run is None:
            self._views.pop(key, None)
            return None
        stamp = (str((run.get("metadata") or {}).get("resourceVersion")), self.pods.version)
        cached = self._views.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        detail = self.run_detail(key)
        assert detail is not None
        state = updates.run_state(detail)
        self._views.pop(key, None)
        self._views[key] = (stamp, detail, state)
        while len(self._views) > VIEW_CACHE_SIZE:
            del self._views[next(iter(self._views))]
        return detail, state

    async def start(self) -> None:
        for informer in self.informers:
            informer.start()

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers))


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.enable_compression()  # a 1000-step run's page is ~1 MB of markup, ~15 times less gzipped
    return response


async def _synced(dashboard: Dashboard, *informers: Informer) -> None:
    """Wait briefly for the first listing, so a page opened at start-up is not shown empty."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), 10)


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/runs")


async def runs_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.runs)
    rows = views.run_rows(dashboard.runs.objects.values(), dashboard.clock())
    return _html(pages.runs_page(rows, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def run_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.runs, dashboard.pods)
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    view = dashboard.run_view(key)
    if view is None:
        return _html(pages.not_found_page(f"No PipelineRun {key}.", namespaces=dashboard.scope), 404)
    return _html(pages.run_page(view[0], namespaces=dashboard.scope, kinds=dashboard.kinds))


async def pipelines_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.pipelines)
    found = views.pipeline_views(dashboard.pipelines.objects.values())
    return _html(pages.pipelines_page(found, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def pipeline_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.pipelines, dashboard.runs)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    pipeline = dashboard.pipelines.objects.get(f"{namespace}/{name}")
    if pipeline is None:
        return _html(
            pages.not_found_page(f"No Pipeline {namespace}/{name}.", namespaces=dashboard.scope), 404
        )
    runs = views.run_rows(views.runs_of(dashboard.runs.objects.values(), namespace, name), dashboard.clock())
    page = pages.pipeline_page(
        views.pipeline_view(pipeline), runs, namespaces=dashboard.scope, kinds=dashboard.kinds
    )
    return _html(page)


async def jobs_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.jobs)
    if dashboard.jobs.absent:
        return _html(
            pages.not_found_page(
                "PipelineJobs are not installed in this cluster.",
                namespaces=dashboard.scope,
                kinds=dashboard.kinds,
            ),
            404,
        )
    rows = views.job_rows(dashboard.jobs.objects.values())
    return _html(pages.jobs_page(rows, namespaces=dashboard.scope, kinds=dashboard.kinds))


def _job_detail(dashboard: Dashboard, key: str, batch: str | None) -> views.JobDetail | None:
    job = dashboard.jobs.objects.get(key)
    if job is None:
        return None
    return views.job_detail(job, dashboard.runs.objects.values(), dashboard.clock(), batch)


async def job_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.jobs, dashboard.runs)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    detail = _job_detail(dashboard, f"{namespace}/{name}", request.query.get("batch"))
    if detail is None:
        return _html(
            pages.not_found_page(
                f"No PipelineJob {namespace}/{name}.", namespaces=dashboard.scope, kinds=dashboard.kinds
            ),
            404,
        )
    events = request.path + "/events" + (f"?batch={quote(detail.batch, safe='')}" if detail.batch else "")
    return _html(pages.job_page(detail, events, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    text = resources.files("orchest_operator.dashboard").joinpath("static", name).read_text(encoding="utf-8")
    return web.Response(text=text, content_type=STATIC_FILES[name], charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    """503 while a watch fails (API server unreachable, RBAC missing): the pod is then not ready, and a
    restart (it holds no state) is as good a retry as any."""
    dashboard = request.app[STATE]
    problems = [i.error for i in dashboard.informers if i.error]
    return web.json_response({"ok": not problems, "problems": problems}, status=503 if problems else 200)


# --- server-sent events -------------------------------------------------------------------------------


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
    )
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())


async def _follow(response: web.StreamResponse, changed: asyncio.Event, emit: Callable[[], Any]) -> None:
    """Each time ``changed`` is set (after a short pause that gathers a burst), run ``emit``; ping the
    browser while idle so a closed tab is noticed."""
    while True:
        try:
            await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
        except TimeoutError:
            await response.write(b": ping\n\n")
            continue
        await asyncio.sleep(COALESCE_SECONDS)
        changed.clear()
        if await emit():
            return


async def runs_events(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.runs)
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()  # the first message brings a page loaded before a change up to date
    unsubscribe = dashboard.runs.subscribe(lambda obj: changed.set())
    state = updates.ListState()

    async def emit() -> bool:
        nonlocal state
        rows = views.run_rows(dashboard.runs.objects.values(), dashboard.clock())
        message, state = updates.run_list(state, rows)
        if message:
            await _send(response, "rows", message)
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def jobs_events(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.jobs)
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()
    unsubscribe = dashboard.jobs.subscribe(lambda obj: changed.set())
    state = updates.ListState()

    async def emit() -> bool:
        nonlocal state
        message, state = updates.job_list(state, views.job_rows(dashboard.jobs.objects.values()))
        if message:
            await _send(response, "rows", message)
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def pipelines_events(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.pipelines)
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()
    unsubscribe = dashboard.pipelines.subscribe(lambda obj: changed.set())
    state = updates.ListState()

    async def emit() -> bool:
        nonlocal state
        found = views.pipeline_views(dashboard.pipelines.objects.values())
        message, state = updates.pipeline_list(state, found)
        if message:
            await _send(response, "rows", message)
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def pipeline_events(request: web.Request) -> web.StreamResponse:
    """A Pipeline's page: its own part re-sent when the Pipeline changes, its runs when one of them does."""
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.pipelines, dashboard.runs)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    key = f"{namespace}/{name}"
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()

    def on_pipeline(obj: dict[str, Any]) -> None:
        if views.key_of(obj) == key:
            changed.set()

    def on_run(obj: dict[str, Any]) -> None:
        if (obj.get("metadata") or {}).get("namespace") == namespace and (
            ((obj.get("spec") or {}).get("pipelineRef") or {}).get("name") == name
        ):
            changed.set()

    unsubscribe = [dashboard.pipelines.subscribe(on_pipeline), dashboard.runs.subscribe(on_run)]
    last = {"pipeline-body": "", "pipeline-runs-section": ""}
    pipeline = dashboard.pipelines.objects.get(key)
    if pipeline is not None:  # what the page was rendered with, near enough: only changes go out
        last["pipeline-body"] = pages.pipeline_body(views.pipeline_view(pipeline))

    async def emit() -> bool:
        current = dashboard.pipelines.objects.get(key)
        if current is None:
            await _send(response, "gone", {"pipeline": key})
            return True
        runs = views.run_rows(
            views.runs_of(dashboard.runs.objects.values(), namespace, name), dashboard.clock()
        )
        sections = {}
        for element, html in (
            ("pipeline-body", pages.pipeline_body(views.pipeline_view(current))),
            ("pipeline-runs-section", pages.pipeline_runs(runs)),
        ):
            message, last[element] = updates.section(last[element], html, element)
            if message:
                sections.update(message["sections"])
        if sections:
            await _send(response, "sections", {"sections": sections})
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for stop in unsubscribe:
            stop()
    return response


async def job_events(request: web.Request) -> web.StreamResponse:
    """A job's batches and combinations, re-sent whole when the job or one of its runs changes."""
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.jobs, dashboard.runs)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    key, batch = f"{namespace}/{name}", request.query.get("batch")
    response = await _open_stream(request)
    changed = asyncio.Event()
    changed.set()

    def on_change(obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        owners = {r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == views.JOB_KIND}
        if views.key_of(obj) == key or (meta.get("namespace") == namespace and name in owners):
            changed.set()

    unsubscribe = [dashboard.jobs.subscribe(on_change), dashboard.runs.subscribe(on_change)]
    detail = _job_detail(dashboard, key, batch)
    last = pages.job_body(detail) if detail else ""

    async def emit() -> bool:
        nonlocal last
        current = _job_detail(dashboard, key, batch)
        if current is None:
            await _send(response, "gone", {"job": key})
            return True
        message, last = updates.section(last, pages.job_body(current), "job-body")
        if message:
            await _send(response, "sections", message)
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for stop in unsubscribe:
            stop()
    return response


async def run_events(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.runs, dashboard.pods)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    key, label = f"{namespace}/{name}", naming.label_value(name)
    response = await _open_stream(request)
    changed = asyncio.Event()
    view = dashboard.run_view(key)
    # The page was rendered from the run at version ``rv``: if it changed since, send every row once.
    fresh = view is not None and view[0].resource_version == request.query.get("rv")
    state = view[1] if view is not None and fresh else updates.RunState()
    changed.set()

    def on_run(obj: dict[str, Any]) -> None:
        if views.key_of(obj) == key:
            changed.set()

    def on_pod(obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") == namespace and (meta.get("labels") or {}).get(naming.LABEL_RUN) == label:
            changed.set()

    unsubscribe = [dashboard.runs.subscribe(on_run), dashboard.pods.subscribe(on_pod)]

    async def emit() -> bool:
        nonlocal state
        current = dashboard.run_view(key)
        if current is None:
            await _send(response, "gone", {"run": key})
            return True
        message, state = updates.run_page(state, *current)
        if message:
            await _send(response, "run", message)
        return False

    try:
        await _follow(response, changed, emit)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        for stop in unsubscribe:
            stop()
    return response


async def step_log(request: web.Request) -> web.StreamResponse:
    """A step's log from ``pods/log``, followed while the pod runs, as ``text`` events; ``info`` says
    plainly why there is none; ``end`` tells the page not to reconnect."""
    dashboard = request.app[STATE]
    await _synced(dashboard, dashboard.runs, dashboard.pods)
    namespace, name, step = (request.match_info[k] for k in ("namespace", "name", "step"))
    response = await _open_stream(request)
    run = dashboard.runs.objects.get(f"{namespace}/{name}")
    try:
        if run is None:
            await _send(response, "info", f"No PipelineRun {namespace}/{name}.")
        else:
            pod, why = views.step_log_target(
                run, step, dashboard.pod_index(), pods_known=dashboard.pods.synced.is_set()
            )
            if pod is None:
                await _send(response, "info", why)
            else:
                await _stream_log(dashboard, response, namespace, pod, step)
        await _send(response, "end", {})
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _stream_log(
    dashboard: Dashboard, response: web.StreamResponse, namespace: str, pod: str, step: str
) -> None:
    phase = ((dashboard.pods.objects.get(f"{namespace}/{pod}") or {}).get("status") or {}).get("phase")
    follow = phase in (None, "Pending", "Running")
    await _send(response, "info", f"Pod {pod}" + (" (following while it runs)" if follow else ""))
    params = {"tailLines": LOG_TAIL_LINES, "container": "step"}
    if follow:
        params["follow"] = "true"
    path = f"{PODS.path(namespace)}/{pod}/log"
    try:
        async for text in dashboard.client.text_stream(path, params):
            await _send(response, "text", text)
    except ApiError as error:
        if error.status == 404:
            await _send(
                response, "info", f"The pod {pod} of step {step} is gone: its log is no longer available."
            )
        else:
            await _send(response, "info", f"The log could not be read: {error.message} (HTTP {error.status})")


# --- the application ----------------------------------------------------------------------------------


def create_app(
    client: ApiClient, namespaces: Sequence[str] | None, *, clock: Clock = pages.now
) -> web.Application:
    """The dashboard's aiohttp application; its informers start and stop with it."""
    app = web.Application(middlewares=[security_headers])
    dashboard = Dashboard(client, namespaces, clock)
    app[STATE] = dashboard

    async def lifecycle(app: web.Application) -> Any:
        await dashboard.start()
        yield
        await dashboard.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/static/{file}", static)
    app.router.add_get("/runs", runs_page)
    app.router.add_get("/runs/events", runs_events)
    app.router.add_get("/runs/{namespace}/{name}", run_page)
    app.router.add_get("/runs/{namespace}/{name}/events", run_events)
    app.router.add_get("/runs/{namespace}/{name}/steps/{step}/log", step_log)
    app.router.add_get("/pipelines", pipelines_page)
    app.router.add_get("/pipelines/events", pipelines_events)
    app.router.add_get("/pipelines/{namespace}/{name}", pipeline_page)
    app.router.add_get("/pipelines/{namespace}/{name}/events", pipeline_events)
    app.router.add_get("/jobs", jobs_page)
    app.router.add_get("/jobs/events", jobs_events)
    app.router.add_get("/jobs/{namespace}/{name}", job_page)
    app.router.add_get("/jobs/{namespace}/{name}/events", job_events)
    return app


async def serve(
    client: ApiClient,
    namespaces: Sequence[str] | None,
    address: str,
    port: int,
    *,
    ready: Callable[[str], None],
) -> None:
    """Serve until cancelled; ``ready(url)`` is called once the socket listens."""
    app = create_app(client, namespaces)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, address, port)
        await site.start()
        host = f"[{address}]" if ":" in address else address
        ready(f"http://{host}:{port}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
