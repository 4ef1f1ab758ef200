"""Status size: the PipelineRun object of a run of S independent steps, and every status write on the way.

The baseline of a write is the smallest merge patch that turns the stored status into the written one:
a write larger than that re-sends what the server already has. On the emulator each PATCH body is
weighed as received; on a cluster only the object versions seen on the watch (and their smallest diffs)
are known.
"""

from __future__ import annotations

import time
from typing import Any

from bench.emulator import compact
from bench.recorder import Recorder
from bench.report import Ratio, Result
from bench.target import Arena
from bench.workloads import PIPELINES, RUNS, pipeline, run, step_file, wide

RUN_TIME = 0.0
TIMEOUT = 900.0
BUDGET = 256 * 1024
"""The issue's budget for a 1000-step run's object; etcd refuses objects over 1.5 MiB."""


async def bench_status(arena: Arena, steps: int, parallelism: int, job_complete_delay: float) -> Result:
    result = Result("status", {"steps": steps, "parallelism": parallelism, "budget_bytes": BUDGET})
    api, ns = arena.client("setup"), arena.namespace
    await api.create(PIPELINES, pipeline("big", ns, wide(steps, step_file(RUN_TIME)), arena.image))
    async with (
        Recorder(arena.client("recorder"), ns, weigh_runs=True) as recorder,
        arena.kubelet(RUN_TIME, job_complete_delay),
    ):
        before = await arena.operator_stats()
        began = time.perf_counter()
        await api.create(RUNS, run("big", ns, "big", parallelism=parallelism))
        await recorder.wait(
            lambda: {("big", "Succeeded"), ("big", "Failed")} & recorder.run_phase.keys(),
            TIMEOUT,
            "run big finished",
        )
        after = await arena.operator_stats()
    if ("big", "Succeeded") not in recorder.run_phase:
        raise RuntimeError(f"run big failed: {recorder.run_reason.get('big')}")
    final = await api.get(RUNS, "big", ns)
    status = final.get("status") or {}
    writes: dict[str, Any] = {"seen_versions": len(recorder.run_diffs) + 1}
    if arena.emulator is not None:
        mine = [w for w in arena.emulator.status_writes if w.run == "big"]
        writes.update(
            count=len(mine),
            largest_body_bytes=max(w.body_bytes for w in mine),
            largest_needed_bytes=max(w.needed_bytes for w in mine),
            total_body_bytes=sum(w.body_bytes for w in mine),
            total_needed_bytes=sum(w.needed_bytes for w in mine),
        )
    else:
        writes.update(
            largest_needed_bytes=max(recorder.run_diffs, default=None),
            total_needed_bytes=sum(recorder.run_diffs),
        )
    result.measurements = {
        "object": {
            "bytes": compact(final),
            "status_bytes": compact(status),
            "snapshot_bytes": compact(status.get("snapshot")),
            "steps_bytes": compact(status.get("steps")),
            "budget_bytes": BUDGET,
        },
        "status_writes": writes,
        "run": {
            "wall_s": recorder.run_phase.get(("big", "Succeeded"), began) - began,
            "operator_cpu_s": None
            if before is None or after is None
            else after.cpu_seconds - before.cpu_seconds,
        },
    }
    result.ratios += [
        Ratio("object/budget", "object.bytes", "object.budget_bytes", "<= 1"),
        Ratio(
            "largest_write/needed",
            "status_writes.largest_body_bytes",
            "status_writes.largest_needed_bytes",
            "~ 1",
        ),
        Ratio(
            "all_writes/needed", "status_writes.total_body_bytes", "status_writes.total_needed_bytes", "~ 1"
        ),
    ]
    result.notes += [
        "bytes are compact JSON, as a custom resource is stored in etcd (a real server adds managedFields)",
        "needed: the smallest RFC 7386 merge patch from the stored status to the status after the write",
    ]
    return result
