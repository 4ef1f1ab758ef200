"""Chain: N sequential steps, the operator against a bare watcher that starts Job k+1 the moment Job k's
pod has Succeeded (the floor Kubernetes sets; ``bench.bare_engine``, a process of its own with its own
watch, as the operator) and one that waits for Job k's ``Complete`` condition (what a naive Job-per-step
engine gets: the Job controller marks a Job Complete about a second after its pod).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from bench.bare_engine import plan_job
from bench.operator_process import histogram
from bench.recorder import Recorder
from bench.report import Ratio, Result, percentile, spread
from bench.target import Arena
from bench.workloads import JOBS, PIPELINES, RUNS, bare_job, chain, pipeline, run, step_file
from orchest_operator.naming import job_name

TIMEOUT_PER_STEP = 30.0


def _key(seconds: float) -> str:
    return f"steps_{round(seconds * 1000)}ms"


def _reactions(recorder: Recorder, jobs: Sequence[str]) -> list[float]:
    """Pod of Job k seen Succeeded → Job k+1 seen created, for every edge of the chain."""
    return [
        recorder.job_created[nxt] - recorder.pod_succeeded[job]
        for job, nxt in itertools.pairwise(jobs)
        if job in recorder.pod_succeeded and nxt in recorder.job_created
    ]


def _pod_p50(recorder: Recorder, jobs: Sequence[str]) -> float | None:
    """Median of Job seen created → its pod seen Succeeded: the kubelet's (and API server's) share."""
    return percentile([recorder.pod_succeeded[j] - recorder.job_created[j] for j in jobs], 50)


async def _operator(arena: Arena, recorder: Recorder, n: int, seconds: float) -> dict[str, Any]:
    tag = f"chain-{round(seconds * 1000)}ms"
    api, ns = arena.client("setup"), arena.namespace
    await api.create(PIPELINES, pipeline(tag, ns, chain(n, step_file(seconds)), arena.image))
    jobs = [job_name(tag, f"s{i}") for i in range(n)]
    began = time.perf_counter()
    await api.create(RUNS, run(tag, ns, tag))
    await recorder.wait(
        lambda: (tag, "Succeeded") in recorder.run_phase or (tag, "Failed") in recorder.run_phase,
        TIMEOUT_PER_STEP * n,
        f"run {tag} finished",
    )
    if (tag, "Succeeded") not in recorder.run_phase:
        raise RuntimeError(f"run {tag} failed: {recorder.run_reason.get(tag)}")
    # Pods and runs come on separate watch streams: the run's last event may arrive first.
    await recorder.wait(lambda: recorder.all_pods_succeeded(jobs), TIMEOUT_PER_STEP, f"pods of {tag}")
    return {
        "wall_s": recorder.run_phase[(tag, "Succeeded")] - began,
        "last_pod_s": recorder.pod_succeeded[jobs[-1]] - began,
        "first_job_s": recorder.job_created[jobs[0]] - began,
        "pod_p50_s": _pod_p50(recorder, jobs),
        "reactions": _reactions(recorder, jobs),
    }


async def _floor(arena: Arena, recorder: Recorder, n: int, seconds: float) -> dict[str, Any]:
    """The bare engine (a process of its own, with its own watch, as the operator) creates Job k+1 as
    soon as it sees Job k's pod Succeeded."""
    tag = f"floor-{round(seconds * 1000)}ms"
    ns, file = arena.namespace, step_file(seconds)
    jobs = [f"{tag}-{i}" for i in range(n)]
    plan = [
        plan_job(bare_job(job, ns, tag, file, arena.image), jobs[i - 1 : i]) for i, job in enumerate(jobs)
    ]
    async with await arena.bare_engine(plan) as engine:
        began = await engine.go()
        await engine.done(TIMEOUT_PER_STEP * n)
        await recorder.wait(lambda: recorder.all_pods_succeeded(jobs), TIMEOUT_PER_STEP, f"pods of {tag}")
    return {
        "wall_s": recorder.pod_succeeded[jobs[-1]] - began,
        "pod_p50_s": _pod_p50(recorder, jobs),
        "reactions": _reactions(recorder, jobs),
    }


async def _job_complete(arena: Arena, recorder: Recorder, n: int, seconds: float) -> dict[str, Any]:
    """Create Job k+1 once the benchmark's watch shows Job k ``Complete``: the naive engine. Its second
    of Job controller delay per step dwarfs where it runs, so it runs here."""
    tag = f"complete-{round(seconds * 1000)}ms"
    api, ns = arena.client("baseline"), arena.namespace
    jobs = [f"{tag}-{i}" for i in range(n)]
    began = time.perf_counter()
    for job in jobs:
        await api.create(JOBS, bare_job(job, ns, tag, step_file(seconds), arena.image))
        await recorder.wait(
            lambda job=job: job in recorder.job_complete, TIMEOUT_PER_STEP, f"baseline Job {job} done"
        )
    await recorder.wait(lambda: recorder.all_pods_succeeded(jobs), TIMEOUT_PER_STEP, f"pods of {tag}")
    return {
        "wall_s": recorder.job_complete[jobs[-1]] - began,
        "pod_p50_s": _pod_p50(recorder, jobs),
        "reactions": _reactions(recorder, jobs),
    }


async def bench_chain(
    arena: Arena, n: int, step_seconds: Sequence[float], job_complete_delay: float
) -> Result:
    result = Result(
        "chain",
        {"steps": n, "step_seconds": list(step_seconds), "job_complete_delay_s": job_complete_delay},
    )
    before = await arena.metrics()
    operator_reactions: list[float] = []
    floor_reactions: list[float] = []
    async with Recorder(arena.client("recorder"), arena.namespace) as recorder:
        for seconds in step_seconds:
            async with arena.kubelet(seconds, job_complete_delay):
                op = await _operator(arena, recorder, n, seconds)
                floor = await _floor(arena, recorder, n, seconds)
                naive = await _job_complete(arena, recorder, n, seconds)
            operator_reactions += op.pop("reactions")
            floor_reactions += floor.pop("reactions")
            naive.pop("reactions")
            key = _key(seconds)
            result.measurements[key] = {"operator": op, "floor": floor, "job_complete": naive}
            result.ratios += [
                Ratio(f"{key}.operator/floor", f"{key}.operator.wall_s", f"{key}.floor.wall_s", "<= 1.2"),
                Ratio(f"{key}.operator/job_complete", f"{key}.operator.wall_s", f"{key}.job_complete.wall_s"),
                Ratio(f"{key}.last_pod/floor", f"{key}.operator.last_pod_s", f"{key}.floor.wall_s", "<= 1.2"),
            ]
    result.measurements["reaction_s"] = {
        "operator": spread(operator_reactions),
        "floor": spread(floor_reactions),
    }
    result.ratios.append(
        Ratio("reaction_p50.operator/floor", "reaction_s.operator.p50", "reaction_s.floor.p50")
    )
    after = await arena.metrics()
    if before is not None and after is not None:
        result.measurements["operator_histogram"] = histogram(before, after)
    result.notes += [
        "wall_s: operator = run created -> run seen Succeeded; floor = the bare engine (a process of its "
        "own, watching pods) told to go -> last pod seen Succeeded; job_complete = first Job created -> "
        "last Job seen Complete",
        "last_pod_s: run created -> the operator's last step pod seen Succeeded (same end point as floor)",
        "pod_p50_s: median Job seen created -> its pod seen Succeeded; wall ~ n x (pod_p50_s + reaction)",
        "reaction_s: pod of step k seen Succeeded -> Job of step k+1 seen created, on the benchmark's watch; "
        "issue target for the operator: p50 <= 0.020 s, p99 <= 0.100 s",
        "operator_histogram: orchest_reaction_seconds from the operator's /metrics: first watch event that "
        "made the run dirty -> its new Jobs created (excludes watch delivery; bucket bounds only)",
    ]
    return result
