"""``python -m bench.dashboard``: how fast a 1000-step run's page renders, and what one step's change costs.

A run of S steps (a layered DAG: each step needs one or two steps of the layer before) is written into the
emulator with a mixed status, and the real dashboard serves it. Measured in the same run:

- the server: building the page (view models, step table, SVG) and its size;
- Chromium (Debian's, through Playwright): navigation to the page's ``load`` event, and until the last
  step's box is in the DOM — the budget is 2 s;
- one step's change: its live-update message against the whole page (bytes), and the time from the status
  PATCH to the box recoloured in the open page against the baseline of reloading the page.

No timed assertion anywhere: it prints figures and ratios. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from orchest_operator.dashboard import pages, updates, views
from orchest_operator.dashboard.client import ApiClient, load_configuration
from orchest_operator.dashboard.server import create_app
from tests.support.browser import FLAGS, NoBrowser, ensure_chromium
from tests.support.cluster import running_cluster

RUNS = "orchest.io/v1alpha1/pipelineruns"
NAMESPACE = "bench"
BUDGET_SECONDS = 2.0
WIDTH = 50
"""Steps per layer of the DAG."""


def layered_steps(count: int, width: int = WIDTH) -> list[dict[str, Any]]:
    """Layers of ``width`` steps, each needing one or two of the layer before (width 1: a chain)."""
    steps = []
    for i in range(count):
        layer, index = divmod(i, width)
        deps = (
            []
            if layer == 0
            else sorted({(layer - 1) * width + index, (layer - 1) * width + (index * 7) % width})
        )
        steps.append(
            {"name": f"s{i:04d}", "file": f"step{i % 7}.ipynb", "dependsOn": [f"s{d:04d}" for d in deps]}
        )
    return steps


def step_status(i: int, phase: str) -> dict[str, Any]:
    state: dict[str, Any] = {"phase": phase}
    if phase != "Pending":
        state.update(jobName=f"big-s{i:04d}-00000000", attempts=1, startTime="2026-12-06T03:00:00Z")
    if phase in ("Succeeded", "Failed"):
        state["completionTime"] = "2026-12-06T03:00:20Z"
    if phase == "Failed":
        state["failure"] = {"cell": 3, "ename": "ValueError", "evalue": "bad input"}
        state["message"] = "BackoffLimitExceeded: Job has reached the specified backoff limit"
    return state


def run_object(count: int, width: int = WIDTH) -> tuple[dict[str, Any], dict[str, Any]]:
    steps = layered_steps(count, width)
    done = count // 2
    phases = ["Succeeded"] * done + ["Running"] * min(WIDTH, count - done)
    phases += ["Pending"] * (count - len(phases))
    phases[3] = "Failed"
    status = {
        "phase": "Running",
        "startTime": "2026-12-06T03:00:00Z",
        "progress": f"{done}/{count}",
        "snapshot": {"pipeline": {"steps": steps}, "selected": [s["name"] for s in steps]},
        "steps": {s["name"]: step_status(i, phases[i]) for i, s in enumerate(steps)},
    }
    body = {"metadata": {"name": "big", "namespace": NAMESPACE}, "spec": {"pipelineRef": {"name": "p"}}}
    return body, status


PAINT_SECONDS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return [(paint ? paint.startTime : NaN) / 1000, nav.loadEventEnd / 1000];
}"""
"""In the page, from the start of navigation: its first contentful paint and the end of its load event."""


def median_ms(samples: Sequence[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def server_figures(body: dict[str, Any], status: dict[str, Any], repeat: int) -> dict[str, Any]:
    run = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}, "status": status}
    now = datetime.datetime(2026, 12, 6, 3, 1, tzinfo=datetime.UTC)
    pods = views.PodIndex([])
    renders, diffs = [], []
    html = ""
    for _ in range(repeat):
        started = time.perf_counter()
        html = pages.run_page(views.run_detail(run, pods, now), namespaces=NAMESPACE)
        renders.append(time.perf_counter() - started)
    state = updates.run_state(views.run_detail(run, pods, now))
    changed = json.loads(json.dumps(run))
    name = next(n for n, s in changed["status"]["steps"].items() if s["phase"] == "Running")
    changed["status"]["steps"][name] = step_status(0, "Succeeded")
    message: dict[str, Any] | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        message, _ = updates.run_page(state, views.run_detail(changed, pods, now))
        diffs.append(time.perf_counter() - started)
    message_bytes = len(json.dumps(message, separators=(",", ":")))
    return {
        "page_render_ms": median_ms(renders),
        "page_bytes": len(html.encode()),
        "page_bytes_gzipped": len(gzip.compress(html.encode())),
        "update_compute_ms": median_ms(diffs),
        "update_message_bytes": message_bytes,
        "update_bytes_vs_page": round(message_bytes / len(html.encode()), 4),
    }


async def browser_figures(body: dict[str, Any], status: dict[str, Any], repeat: int) -> dict[str, Any]:

    chromium = ensure_chromium()
    with tempfile.TemporaryDirectory() as folder:
        async with running_cluster(Path(folder) / "kubeconfig") as cluster:
            created = await cluster.api.create(RUNS, body)
            await cluster.api.patch_status(RUNS, created["metadata"]["name"], status, NAMESPACE)
            configuration, _ = load_configuration(str(cluster.kubeconfig))
            async with ApiClient(configuration) as client:
                runner = web.AppRunner(create_app(client, [NAMESPACE]), shutdown_timeout=0.5)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                url = f"http://{host}:{port}/runs/{NAMESPACE}/big"
                try:
                    return await _in_browser(cluster, chromium, url, status, repeat)
                finally:
                    await runner.cleanup()


async def _in_browser(
    cluster: Any, chromium: Path, url: str, status: dict[str, Any], repeat: int
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    last = max(status["steps"])
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=list(FLAGS))
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(url)  # warm-up: the server's informers list, Chromium's caches fill
        visible, reloads, applies, paints = [], [], [], []
        for _ in range(repeat):
            started = time.perf_counter()
            await page.goto(url, wait_until="load")
            await page.wait_for_selector(f'svg g[data-step="{last}"]', state="attached")
            visible.append(time.perf_counter() - started)
            paints.append(await page.evaluate(PAINT_SECONDS))
        running = [n for n, s in status["steps"].items() if s["phase"] == "Running"]
        await page.wait_for_selector("#live.on")
        for i in range(min(repeat, len(running))):
            name = running[i]
            selector = f'svg g[data-step="{name}"][data-phase="Succeeded"]'
            started = time.perf_counter()
            patch = {"steps": {name: {"phase": "Succeeded", "completionTime": "2026-12-06T03:00:30Z"}}}
            await cluster.api.patch_status(RUNS, "big", patch, NAMESPACE)
            await page.wait_for_selector(selector, state="attached", timeout=30_000)
            applies.append(time.perf_counter() - started)
            started = time.perf_counter()
            await page.reload(wait_until="load")
            await page.wait_for_selector(f'svg g[data-step="{last}"]', state="attached")
            reloads.append(time.perf_counter() - started)
            await page.wait_for_selector("#live.on")
        errors = await page.evaluate("document.querySelectorAll('svg.dag g.step').length")
        await browser.close()
    return {
        "steps_in_page": errors,
        "first_paint_ms": median_ms([p[0] for p in paints]),
        "load_event_ms": median_ms([p[1] for p in paints]),
        "goto_until_last_box_ms": median_ms(visible),
        "budget_ms": BUDGET_SECONDS * 1000,
        "load_vs_budget": round(statistics.median(p[1] for p in paints) / BUDGET_SECONDS, 3),
        "one_step_live_ms": median_ms(applies),
        "reload_baseline_ms": median_ms(reloads),
        "live_vs_reload": round(statistics.median(applies) / statistics.median(reloads), 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the run (1000)")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"steps per layer; 1 is a chain ({WIDTH})")
    parser.add_argument("--repeat", type=int, default=5, help="samples per figure; medians are printed (5)")
    args = parser.parse_args(argv)
    body, status = run_object(args.steps, args.width)
    figures = {"steps": args.steps, "server": server_figures(body, status, args.repeat)}
    try:
        figures["chromium"] = asyncio.run(browser_figures(body, status, args.repeat))
    except NoBrowser as missing:
        figures["chromium"] = {"skipped": str(missing)}
    for section, values in figures.items():
        if isinstance(values, dict):
            print(section)
            for key, value in values.items():
                print(f"  {key:<24} {value}")
        else:
            print(f"{section:<26} {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
