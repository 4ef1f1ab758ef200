"""Fan-out: one step that M independent steps depend on, against a bare client creating M Jobs at once.

The operator's clock starts when the root step's pod is seen Succeeded (that is what releases the M
steps); the bare client's, a process of its own as the operator is (``bench.bare_engine``), when it is
told to go. Both end when the last of the M Jobs is seen.
On the emulator, the fake kubelet runs only the root step while Jobs are being created: it shares the
emulator's process, and running pods during the burst would slow the server for whichever side happens
to overlap with them. Once every Job exists, a second fake kubelet runs the rest, so the run finishes and
its API requests per step cover a whole run.
"""

from __future__ import annotations

import time

from bench.bare_engine import plan_job
from bench.operator_process import ProcessStats
from bench.recorder import Recorder
from bench.report import Ratio, Result, requests_per_step
from bench.target import Arena
from bench.workloads import PIPELINES, RUNS, bare_job, fan_out, pipeline, run, step_file
from orchest_operator.naming import LABEL_STEP, job_name

RUN_TIME = 0.0
TIMEOUT = 600.0


def _done(recorder: Recorder, name: str) -> bool:
    return bool({(name, "Succeeded"), (name, "Failed")} & recorder.run_phase.keys())


def _cpu(before: ProcessStats | None, after: ProcessStats | None) -> float | None:
    return None if before is None or after is None else after.cpu_seconds - before.cpu_seconds


async def bench_fanout(arena: Arena, m: int, job_complete_delay: float) -> Result:
    result = Result("fanout", {"steps": m, "job_complete_delay_s": job_complete_delay})
    api, ns = arena.client("setup"), arena.namespace
    await api.create(PIPELINES, pipeline("fan", ns, fan_out(m, step_file(RUN_TIME)), arena.image))
    leaves = [job_name("fan", f"l{i}") for i in range(m)]
    bare = [f"bare-{i}" for i in range(m)]
    manifests = [bare_job(j, ns, "bare", step_file(RUN_TIME), arena.image) for j in bare]
    async with Recorder(arena.client("recorder"), ns) as recorder:
        requests_before, stats_before = arena.requests(), await arena.operator_stats()
        began = time.perf_counter()
        async with arena.kubelet(RUN_TIME, job_complete_delay, labels=f"{LABEL_STEP}=root"):
            await api.create(RUNS, run("fan", ns, "fan"))
            await recorder.wait(
                lambda: all(j in recorder.job_created for j in leaves), TIMEOUT, "fan Jobs", run="fan"
            )
            # Pods and Jobs come on separate watch streams: the root pod's event may still be on its way.
            await recorder.wait(
                lambda: job_name("fan", "root") in recorder.pod_succeeded, TIMEOUT, "root pod"
            )
            stats_created = await arena.operator_stats()
            async with await arena.bare_engine([plan_job(m) for m in manifests]) as engine:
                bare_before, engine_before = arena.requests("baseline"), engine.stats()
                bare_began = await engine.go()
                await engine.done(TIMEOUT)
                await recorder.wait(
                    lambda: all(j in recorder.job_created for j in bare), TIMEOUT, "bare Jobs"
                )
                bare_after, engine_after = arena.requests("baseline"), engine.stats()
        async with arena.kubelet(RUN_TIME, job_complete_delay, labels=f"{LABEL_STEP}!=root"):
            await recorder.wait(lambda: _done(recorder, "fan"), TIMEOUT, "run fan finished")
            requests_after, stats_after = arena.requests(), await arena.operator_stats()
            await recorder.wait(lambda: recorder.all_pods_succeeded(bare), TIMEOUT, "bare pods Succeeded")
    if ("fan", "Succeeded") not in recorder.run_phase:
        raise RuntimeError(f"run fan failed: {recorder.run_reason.get('fan')}")
    released = recorder.pod_succeeded[job_name("fan", "root")]
    created = [recorder.job_created[j] for j in leaves]
    bare_created = [recorder.job_created[j] for j in bare]
    counts = None if requests_before is None or requests_after is None else requests_after - requests_before
    result.measurements = {
        "operator": {
            "create_all_s": max(created) - released,
            "first_job_s": min(created) - released,
            "run_wall_s": recorder.run_phase[("fan", "Succeeded")] - began,
            "cpu_s_creating": _cpu(stats_before, stats_created),
            "cpu_s_run": _cpu(stats_before, stats_after),
            "requests_per_step": requests_per_step(counts, m + 1),
        },
        "bare": {
            "create_all_s": max(bare_created) - bare_began,
            "first_job_s": min(bare_created) - bare_began,
            "cpu_s_creating": engine_after.cpu_seconds - engine_before.cpu_seconds,
            "requests_per_step": requests_per_step(
                None if bare_before is None or bare_after is None else bare_after - bare_before, m
            ),
        },
    }
    result.ratios.append(
        Ratio("create_all.operator/bare", "operator.create_all_s", "bare.create_all_s", "<= 1.2")
    )
    result.notes += [
        "create_all_s: operator = root pod seen Succeeded -> last of the M Jobs seen; bare = the bare "
        "engine (a process of its own, as the operator is) told to go -> last Job seen; it sends all M "
        "POSTs at once over one aiohttp connection pool",
        "requests_per_step: every API request the operator made from run creation to run Succeeded "
        "(counted at the emulator; watches excluded), divided by M + 1 steps",
    ]
    return result
