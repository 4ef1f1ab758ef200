"""Concurrent runs: R runs of a ten-step diamond-ish pipeline at once (``concurrencyPolicy: Allow``),
against one run of it alone; the operator's memory and CPU time while it drives them.

A second baseline drives R copies of the same DAG with bare Jobs, each created the moment the pods of
the steps it needs are seen Succeeded (the chain benchmark's floor, for a DAG), from a process of its own
as the operator has (``bench.bare_engine``). On the emulator it shows
what the API server and fake kubelet, sharing one core, allow R concurrent DAGs before any engine adds
its own cost; the slowest run's ratio to it is the operator's share.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.bare_engine import plan_job
from bench.operator_process import ProcessStats
from bench.recorder import Recorder
from bench.report import Ratio, Result, percentile, requests_per_step
from bench.target import Arena
from bench.workloads import PIPELINES, RUNS, Step, bare_job, diamondish, pipeline, run, step_file

TIMEOUT = 900.0
MB = 1024 * 1024
SAMPLE_EVERY = 0.5


def _finished(recorder: Recorder, names: list[str]) -> bool:
    return all((n, "Succeeded") in recorder.run_phase or (n, "Failed") in recorder.run_phase for n in names)


async def _runs(arena: Arena, recorder: Recorder, names: list[str]) -> list[float]:
    """Create the runs at once; each one's wall time from its own create request to Succeeded."""
    api, ns = arena.client("setup"), arena.namespace
    sent: dict[str, float] = {}

    async def create(name: str) -> None:
        sent[name] = time.perf_counter()
        await api.create(RUNS, run(name, ns, "diamond"))

    await asyncio.gather(*(create(n) for n in names))
    await recorder.wait(lambda: _finished(recorder, names), TIMEOUT, f"{len(names)} run(s) finished")
    failed = [n for n in names if (n, "Succeeded") not in recorder.run_phase]
    if failed:
        raise RuntimeError(
            f"{len(failed)} run(s) failed, e.g. {failed[0]}: {recorder.run_reason.get(failed[0])}"
        )
    return [recorder.run_phase[(n, "Succeeded")] - sent[n] for n in names]


async def _bare_runs(
    arena: Arena, recorder: Recorder, steps: list[Step], runs: int, seconds: float
) -> dict[str, Any]:
    """R copies of the DAG as bare Jobs, driven by the bare engine: each copy's wall time from the
    engine's start to the copy's last pod seen Succeeded; the engine's and this process's CPU."""
    ns, file = arena.namespace, step_file(seconds)
    names = {(r, s["name"]): f"bare{r}-{s['name']}" for r in range(runs) for s in steps}
    jobs = [
        plan_job(
            bare_job(names[r, s["name"]], ns, f"bare{r}", file, arena.image),
            (names[r, need] for need in s.get("dependsOn", ())),
        )
        for r in range(runs)
        for s in steps
    ]
    async with await arena.bare_engine(jobs) as engine:
        engine_before, harness_before = engine.stats().cpu_seconds, time.process_time()
        began = await engine.go()
        await engine.done(TIMEOUT)
        await recorder.wait(lambda: recorder.all_pods_succeeded(names.values()), TIMEOUT, "bare copies")
        phase, harness = time.perf_counter() - began, time.process_time() - harness_before
        engine_cpu = engine.stats().cpu_seconds - engine_before
    walls = [max(recorder.pod_succeeded[names[r, s["name"]]] for s in steps) - began for r in range(runs)]
    return {
        "slowest_wall_s": max(walls),
        "median_wall_s": percentile(walls, 50),
        "harness_busy": harness / phase,
        "engine_cpu_ms_per_step": 1000 * engine_cpu / len(jobs),
    }


class Usage:
    """Samples the operator's memory and CPU time while runs go, for the peak a scrape alone would miss
    (on a cluster the metrics endpoint shows only the current RSS; locally ``VmHWM`` is exact)."""

    def __init__(self, arena: Arena) -> None:
        self.arena = arena
        self.peak_rss = 0
        self._task: asyncio.Task[None] | None = None

    async def now(self) -> ProcessStats | None:
        stats = await self.arena.operator_stats()
        if stats is not None:
            self.peak_rss = max(self.peak_rss, stats.peak_rss_bytes, stats.rss_bytes)
        return stats

    async def _sample(self) -> None:
        while True:
            await self.now()
            await asyncio.sleep(SAMPLE_EVERY)

    async def __aenter__(self) -> Usage:
        self._task = asyncio.create_task(self._sample(), name="operator usage")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _mb(stats: ProcessStats | None) -> float | None:
    return None if stats is None else stats.rss_bytes / MB


async def bench_concurrent(arena: Arena, runs: int, seconds: float, job_complete_delay: float) -> Result:
    result = Result(
        "concurrent",
        {
            "runs": runs,
            "steps_per_run": 10,
            "step_seconds": seconds,
            "job_complete_delay_s": job_complete_delay,
        },
    )
    api, ns, steps = arena.client("setup"), arena.namespace, diamondish(step_file(seconds))
    await api.create(PIPELINES, pipeline("diamond", ns, steps, arena.image))
    async with (
        Recorder(arena.client("recorder"), ns) as recorder,
        arena.kubelet(seconds, job_complete_delay),
        Usage(arena) as usage,
    ):
        idle = await usage.now()
        [alone] = await _runs(arena, recorder, ["alone"])
        before = await usage.now()
        counts_before = arena.requests()
        began, harness_began = time.perf_counter(), time.process_time()
        walls = await _runs(arena, recorder, [f"r{i}" for i in range(runs)])
        phase, harness_cpu = time.perf_counter() - began, time.process_time() - harness_began
        counts_after = arena.requests()
        after = await usage.now()
        bare = await _bare_runs(arena, recorder, steps, runs, seconds)
    counts = None if counts_before is None or counts_after is None else counts_after - counts_before
    cpu = None if after is None or before is None else after.cpu_seconds - before.cpu_seconds
    result.measurements = {
        "alone": {"wall_s": alone},
        "concurrent": {
            "slowest_wall_s": max(walls),
            "median_wall_s": percentile(walls, 50),
            "fastest_wall_s": min(walls),
        },
        "operator": {
            "idle_rss_mb": _mb(idle),
            "peak_rss_mb": usage.peak_rss / MB if usage.peak_rss else None,
            "rss_after_mb": _mb(after),
            "cpu_s_concurrent": cpu,
            "cpu_ms_per_step": None if cpu is None else 1000 * cpu / (runs * 10),
            "requests_per_step": requests_per_step(counts, runs * 10),
            "busy": None if cpu is None else cpu / phase,
        },
        "harness": {"cpu_s_concurrent": harness_cpu, "busy": harness_cpu / phase},
        "bare": bare,
    }
    result.ratios += [
        Ratio("slowest/alone", "concurrent.slowest_wall_s", "alone.wall_s", "<= 1.2"),
        Ratio("median/alone", "concurrent.median_wall_s", "alone.wall_s"),
        Ratio("slowest/bare_slowest", "concurrent.slowest_wall_s", "bare.slowest_wall_s"),
        Ratio("bare_slowest/alone", "bare.slowest_wall_s", "alone.wall_s"),
        Ratio("peak_rss/idle_rss", "operator.peak_rss_mb", "operator.idle_rss_mb"),
    ]
    result.notes += [
        "wall: each run's create request -> run seen Succeeded; all R runs are created at once",
        "peak_rss_mb: the operator process's high-water mark (VmHWM, since it started) when it is the "
        "benchmark's subprocess, else the largest RSS its metrics showed (sampled every 0.5 s); target: "
        "<= 200 MB at 100 runs (--size 100)",
        "emulated: the API server, the fake kubelet and this benchmark share one process (one core), so "
        "at large R the slowest run also measures them",
        "bare: R copies of the DAG as bare Jobs, each created when its needs' pods are seen Succeeded, by "
        "the bare engine (a process of its own); wall = engine told to go -> the copy's last pod seen "
        "Succeeded",
        "busy: CPU seconds per second of wall time while the R runs went (1.0 = one core all the time); "
        "harness = this process (emulator, fake kubelet, watches) on the emulator, else the benchmark alone",
    ]
    return result
