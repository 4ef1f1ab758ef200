"""The dashboard's web server: GET routes only, pages from the informers, live updates as server-sent events.

Every page is rendered from the informers' copies (never a request to the API server per page view);
``pods/log`` is the one thing read per request, because a log is asked for by one person at a time. No
credential is ever written into a response: the browser sees HTML, JSON of rendered rows and log text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from orchest_operator.dashboard import events, job_views, pages, views
from orchest_operator.dashboard.client import ApiClient
from orchest_operator.dashboard.pages import SECURITY_HEADERS
from orchest_operator.dashboard.state import STATE, Clock, Dashboard, synced

STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


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


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/runs")


async def runs_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await synced(dashboard.runs)
    rows = views.run_rows(dashboard.runs.objects.values(), dashboard.clock())
    return _html(pages.runs_page(rows, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def run_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await synced(dashboard.runs, dashboard.pods)
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    view = dashboard.run_view(key)
    if view is None:
        return _html(pages.not_found_page(f"No PipelineRun {key}.", namespaces=dashboard.scope), 404)
    return _html(pages.run_page(view[0], namespaces=dashboard.scope, kinds=dashboard.kinds))


async def pipelines_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await synced(dashboard.pipelines)
    found = views.pipeline_views(dashboard.pipelines.objects.values())
    return _html(pages.pipelines_page(found, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def pipeline_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await synced(dashboard.pipelines, dashboard.runs)
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
    await synced(dashboard.jobs)
    if dashboard.jobs.absent:
        return _html(
            pages.not_found_page(
                "PipelineJobs are not installed in this cluster.",
                namespaces=dashboard.scope,
                kinds=dashboard.kinds,
            ),
            404,
        )
    rows = job_views.job_rows(dashboard.jobs.objects.values())
    return _html(pages.jobs_page(rows, namespaces=dashboard.scope, kinds=dashboard.kinds))


async def job_page(request: web.Request) -> web.Response:
    dashboard = request.app[STATE]
    await synced(dashboard.jobs, dashboard.runs)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    detail = dashboard.job_detail(f"{namespace}/{name}", request.query.get("batch"))
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
    app.router.add_get("/runs/events", events.runs_events)
    app.router.add_get("/runs/{namespace}/{name}", run_page)
    app.router.add_get("/runs/{namespace}/{name}/events", events.run_events)
    app.router.add_get("/runs/{namespace}/{name}/steps/{step}/log", events.step_log)
    app.router.add_get("/pipelines", pipelines_page)
    app.router.add_get("/pipelines/events", events.pipelines_events)
    app.router.add_get("/pipelines/{namespace}/{name}", pipeline_page)
    app.router.add_get("/pipelines/{namespace}/{name}/events", events.pipeline_events)
    app.router.add_get("/jobs", jobs_page)
    app.router.add_get("/jobs/events", events.jobs_events)
    app.router.add_get("/jobs/{namespace}/{name}", job_page)
    app.router.add_get("/jobs/{namespace}/{name}/events", events.job_events)
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
