"""The dashboard in a real browser (Debian's Chromium through Playwright), against the emulator with the
real operator, fake kubelet and Job controller running: what a person sees, and that it stays live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import expect

from orchest_operator.dashboard.client import ApiClient, load_configuration
from orchest_operator.dashboard.server import create_app
from tests.support.browser import ARTIFACTS, FLAGS, ensure_chromium
from tests.support.cluster import Cluster
from tests.support.kubelet import Outcome
from tests.support.waiting import wait_for

OPERATOR = "orchest_operator.handlers"
TEAM, OTHER = "team", "other"
RUNS = "orchest.io/v1alpha1/pipelineruns"
PIPELINES = "orchest.io/v1alpha1/pipelines"
JOBS = "orchest.io/v1alpha1/pipelinejobs"
EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
DIAMOND = [
    {"name": "load", "file": "load.ipynb"},
    {"name": "fit", "file": "fit.ipynb", "dependsOn": ["load"]},
    {"name": "plot", "file": "plot.py", "dependsOn": ["load"]},
    {"name": "report", "file": "report.sh", "dependsOn": ["fit", "plot"]},
]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHEST_DEFAULT_STEP_IMAGE", "runner:test")


@pytest.fixture
async def dashboard(cluster: Cluster) -> AsyncIterator[str]:
    """The dashboard of namespaces team and other, served on a free port: its base URL."""
    configuration, _ = load_configuration(str(cluster.kubeconfig))
    async with ApiClient(configuration) as client:
        runner = web.AppRunner(create_app(client, [TEAM, OTHER]), shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            yield f"http://{host}:{port}"
        finally:
            await runner.cleanup()


class Browser:
    """A Chromium page that records every console error and uncaught exception."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    chromium = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=list(FLAGS))
        try:
            page = await launched.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(10_000)
            yield Browser(page)
        finally:
            await launched.close()


def pipeline(name: str, steps: list[dict[str, Any]], namespace: str = TEAM) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"volume": {"claimName": "data"}, "parameters": {"seed": 7}, "steps": steps},
    }


def run(name: str, pipeline_name: str = "p", namespace: str = TEAM, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"pipelineRef": {"name": pipeline_name}, **spec},
    }


def phase(cluster: Cluster, name: str) -> str | None:
    return ((cluster.peek(RUNS, name, TEAM) or {}).get("status") or {}).get("phase")


def outcome(job: Mapping[str, Any], pod: Mapping[str, Any]) -> Outcome:
    step = job["metadata"]["labels"]["orchest.io/step"]
    if step == "fit":  # a failed notebook, as the step runner reports it in the termination message
        failure = {"cell": 4, "ename": "ValueError", "evalue": f"bad learning rate {EVIL}"}
        return Outcome(succeed=False, message=json.dumps(failure), log=("fitting", "Traceback: ValueError"))
    slow = step.startswith("slow")
    return Outcome(run_time=1.5 if slow else 0.05, log=(f"{step} starts", f"{step} done"))


async def test_runs_live_run_page_failure_and_log(
    cluster: Cluster, operator, fake_kubelet, dashboard: str, browser: Browser
) -> None:
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, outcome=outcome, namespace=TEAM)
    await cluster.api.create(PIPELINES, pipeline("p", DIAMOND))
    await cluster.api.create(RUNS, run("r1", failurePolicy="Continue"))
    await wait_for(lambda: phase(cluster, "r1") == "Failed", timeout=15)
    page = browser.page

    # The run list, with phases; then a new run appears without a reload.
    await page.goto(f"{dashboard}/runs")
    await page.wait_for_selector("#live.on")
    assert await page.inner_text('tr[data-key="team/r1"] .badge') == "Failed"
    await page.evaluate("window.__sameDocument = true")
    chain = [
        {"name": f"slow{i}", "file": "s.py", "dependsOn": [f"slow{i - 1}"] if i else []} for i in range(2)
    ]
    await cluster.api.create(PIPELINES, pipeline("chain", chain))
    await cluster.api.create(RUNS, run("r2", "chain"))
    await page.wait_for_selector('tr[data-key="team/r2"] .badge.phase-running')
    keys = await page.eval_on_selector_all("#runs tr", "rows => rows.map(r => r.dataset.key)")
    assert keys == ["team/r2", "team/r1"], "newest first"
    assert await page.evaluate("window.__sameDocument") is True, "the page was not reloaded"
    await browser.shot("runs")
    await page.fill("#filter", "chain running")
    await expect(page.locator('tr[data-key="team/r1"]')).to_be_hidden()
    await expect(page.locator('tr[data-key="team/r2"]')).to_be_visible()
    await page.fill("#filter", "")

    # A running run's page follows it: its boxes change colour without a reload.
    await page.goto(f"{dashboard}/runs/team/r2")
    await page.evaluate("window.__sameDocument = true")
    assert await page.get_attribute('svg g[data-step="slow1"]', "data-phase") in ("Pending", "")
    # A running step's log is followed: its first line now, its last when it ends.
    await page.wait_for_selector("#step-slow1.phase-running td:nth-child(7):not(:empty)", timeout=15_000)
    await page.click("#step-slow1 a.log-link")
    await expect(page.locator("#log")).to_contain_text("slow1 starts")
    await expect(page.locator("#log-info")).to_contain_text("following while it runs")
    await expect(page.locator("#log")).to_contain_text("slow1 done", timeout=15_000)
    await page.wait_for_selector('svg g[data-step="slow1"][data-phase="Succeeded"]', timeout=15_000)
    fill = await page.get_attribute('svg g[data-step="slow1"] rect', "fill")
    assert fill == "#d3f9d8"
    assert await page.inner_text("#summary .badge") == "Succeeded"
    assert await page.evaluate("window.__sameDocument") is True

    # The failed run: every step drawn, the notebook's error in the step table, escaped.
    await page.goto(f"{dashboard}/runs/team/r1")
    steps = await page.eval_on_selector_all("svg.dag g.step", "gs => gs.map(g => g.dataset.step)")
    assert sorted(steps) == sorted(s["name"] for s in DIAMOND)
    assert await page.get_attribute('svg g[data-step="fit"]', "data-phase") == "Failed"
    assert await page.inner_text("#step-fit .ename") == "ValueError"
    assert await page.inner_text("#step-fit .evalue") == f"bad learning rate {EVIL}"
    assert await page.evaluate("window.__pwned") is None
    assert await page.inner_text("#step-report .badge") == "Skipped"

    # A step's log, from pods/log; clicking its box opens it too.
    await page.click("#step-fit a.log-link")
    await expect(page.locator("#log")).to_contain_text("Traceback: ValueError")
    assert (await page.inner_text("#log")).startswith("fitting")
    await page.click('svg g[data-step="load"]')
    await expect(page.locator("#log")).to_contain_text("load done")
    assert await page.inner_text("#log-step") == "load"
    await browser.shot("run-failed")

    # The pipeline page: its steps, parameters and drawing.
    await page.goto(f"{dashboard}/pipelines/team/p")
    assert await page.locator("svg.dag g.step").count() == 4
    assert "seed" in await page.inner_text("#pipeline-parameters")
    await browser.shot("pipeline")
    assert browser.errors == []


async def test_foreign_strings_are_escaped_and_unknown_phases_shown(
    cluster: Cluster, dashboard: str, browser: Browser
) -> None:
    """A run written by another operator version (a phase this one does not know), with a step message
    holding markup, the reason its pod does not run, and a step whose pod is gone."""
    await cluster.api.create(PIPELINES, pipeline("p", DIAMOND[:2], namespace=OTHER))
    created = await cluster.api.create(RUNS, run("odd", namespace=OTHER))
    status = {
        "phase": "Running",
        "progress": "1/2",
        "snapshot": {"pipeline": {"steps": DIAMOND[:2]}, "selected": ["load", "fit"]},
        "steps": {
            "load": {"phase": "Frozen", "jobName": "odd-load-1", "message": EVIL, "reason": "Unschedulable"},
            "fit": {"phase": "Succeeded", "jobName": "odd-fit-1", "attempts": 1},
        },
    }
    await cluster.api.patch_status(RUNS, created["metadata"]["name"], status, OTHER)
    page = browser.page
    await page.goto(f"{dashboard}/runs/other/odd")
    assert await page.inner_text("#step-load .message") == f"Unschedulable {EVIL}"
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#steps script, #steps img").count() == 0
    assert await page.get_attribute('svg g[data-step="load"]', "class") == "step phase-frozen"
    assert await page.inner_text("#step-load .badge") == "Frozen"
    assert await page.inner_text("#step-fit td:nth-child(7)") == "gone"
    await page.click("#step-fit a.log-link")
    await expect(page.locator("#log-info")).to_contain_text("is gone")
    await browser.shot("escaped")

    response = await page.request.fetch(f"{dashboard}/runs", method="POST")
    assert response.status == 405, "no route changes anything"
    headers = (await page.request.get(f"{dashboard}/runs/other/odd")).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert browser.errors == []


async def test_a_sweep_table_sorts_and_follows_its_runs(
    cluster: Cluster, dashboard: str, browser: Browser
) -> None:
    """A PipelineJob's page, from the job's status and its runs (written here as its controller would)."""
    batch = "20261206-030000"
    job = await cluster.api.create(
        JOBS,
        {
            "metadata": {"name": "sweep", "namespace": TEAM},
            "spec": {
                "pipelineRef": {"name": "p"},
                "matrix": {"lr": [0.3, 0.1, 0.2]},
                "schedule": "0 3 * * *",
            },
        },
    )
    status = {
        "lastBatch": batch,
        "lastBatchPhase": "Running",
        "activeRuns": 3,
        "batches": [
            {
                "id": batch,
                "trigger": "Schedule",
                "scheduledTime": "2026-12-06T03:00:00Z",
                "phase": "Running",
                "runs": 3,
            }
        ],
    }
    await cluster.api.patch_status(JOBS, "sweep", status, TEAM)
    owner = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "name": "sweep",
        "uid": job["metadata"]["uid"],
    }
    for index, lr in enumerate((0.3, 0.1, 0.2)):
        body = run(f"sweep-{index}", lr=None)
        body["spec"] = {"pipelineRef": {"name": "p"}, "parameters": {"lr": lr}}
        body["metadata"].update(
            labels={"orchest.io/batch": batch},
            annotations={"orchest.io/combination": str(index)},
            ownerReferences=[owner],
        )
        await cluster.api.create(RUNS, body)
    page = browser.page
    await page.goto(f"{dashboard}/jobs")
    assert await page.inner_text('tr[data-key="team/sweep"] td:nth-child(6)') == "3"
    await page.click('tr[data-key="team/sweep"] a')
    await page.wait_for_selector("#live.on")
    rows = "#combinations tr td:nth-child(2)"
    assert await page.eval_on_selector_all(rows, "cells => cells.map(c => c.textContent)") == [
        "0.3",
        "0.1",
        "0.2",
    ]
    await page.click("#job-body th:nth-child(2) button")
    assert await page.eval_on_selector_all(rows, "cells => cells.map(c => c.textContent)") == [
        "0.1",
        "0.2",
        "0.3",
    ]
    await page.click("#job-body th:nth-child(2) button")
    assert await page.eval_on_selector_all(rows, "cells => cells.map(c => c.textContent)") == [
        "0.3",
        "0.2",
        "0.1",
    ]
    # A run finishing shows up in place, and the chosen order holds.
    await cluster.api.patch_status(RUNS, "sweep-1", {"phase": "Succeeded"}, TEAM)
    await expect(page.locator('#combinations tr[data-key="1"] .badge')).to_have_text("Succeeded")
    assert await page.eval_on_selector_all(rows, "cells => cells.map(c => c.textContent)") == [
        "0.3",
        "0.2",
        "0.1",
    ]
    await browser.shot("pipelinejob")
    assert browser.errors == []


async def test_pipelines_follow_their_session_and_runs(
    cluster: Cluster, dashboard: str, browser: Browser
) -> None:
    body = pipeline("nb", DIAMOND[:2], namespace=OTHER)
    body["spec"]["session"] = {"enabled": True}
    await cluster.api.create(PIPELINES, body)
    page = browser.page
    await page.goto(f"{dashboard}/pipelines")
    await page.wait_for_selector("#live.on")
    row = 'tr[data-key="other/nb"]'
    assert await page.inner_text(f"{row} td:nth-child(5)") == "Starting"
    await cluster.api.patch_status(PIPELINES, "nb", {"session": {"phase": "Ready"}}, OTHER)
    await expect(page.locator(f"{row} td:nth-child(5)")).to_have_text("Ready")

    await page.click(f"{row} a")
    await page.wait_for_selector("#live.on")
    assert "kubectl -n other port-forward svc/nb-jupyter 8888" in await page.inner_text("#pipeline-body")
    await cluster.api.patch_status(
        PIPELINES, "nb", {"session": {"phase": "Failed", "reason": "Timeout", "message": EVIL}}, OTHER
    )
    await expect(page.locator("#pipeline-body .badge").first).to_have_text("Failed")
    assert EVIL in await page.inner_text("#pipeline-body")
    await cluster.api.create(RUNS, run("nb-1", "nb", namespace=OTHER))
    await page.wait_for_selector('#pipeline-runs tr[data-key="other/nb-1"]')
    assert await page.evaluate("window.__pwned") is None
    await browser.shot("pipeline-live")
    assert browser.errors == []


async def test_a_sweep_run_by_the_operator(
    cluster: Cluster, operator, fake_kubelet, dashboard: str, browser: Browser
) -> None:
    """The real PipelineJob controller makes a batch of two combinations; the job's page follows them."""
    await operator(OPERATOR)
    await fake_kubelet(job_complete_delay=0.05, namespace=TEAM)
    await cluster.api.create(PIPELINES, pipeline("p", [{"name": "train", "file": "train.py"}]))
    job = {
        "metadata": {"name": "grid", "namespace": TEAM},
        "spec": {"pipelineRef": {"name": "p"}, "matrix": {"lr": [0.3, 0.1]}},
    }
    await cluster.api.create(JOBS, job)

    def batch_phase() -> str | None:
        return ((cluster.peek(JOBS, "grid", TEAM) or {}).get("status") or {}).get("lastBatchPhase")

    page = browser.page
    await page.goto(f"{dashboard}/jobs")
    await page.wait_for_selector('tr[data-key="team/grid"]')
    await page.goto(f"{dashboard}/jobs/team/grid")
    await page.wait_for_selector("#live.on")
    await expect(page.locator("#combinations tr")).to_have_count(2, timeout=15_000)
    await wait_for(lambda: batch_phase() == "Succeeded", timeout=30)
    await expect(page.locator("#combinations .badge.phase-succeeded")).to_have_count(2, timeout=10_000)
    values = await page.eval_on_selector_all(
        "#combinations tr td:nth-child(2)", "cells => cells.map(c => c.textContent)"
    )
    assert values == ["0.3", "0.1"]
    await page.goto(f"{dashboard}/runs")
    assert await page.locator('#runs td:nth-child(8):has-text("grid")').count() == 2, "each run names its job"
    await browser.shot("pipelinejob-operator")
    assert browser.errors == []
