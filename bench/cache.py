"""Cache: an all-cached run of N notebooks (a chain, the deepest cache keys) against one trivial step.

- local: ``orchest run`` of the N-notebook pipeline whose every step is in the cache, against ``orchest
  run`` of a pipeline of one trivial notebook (no cache), both as a user types them (a process each).
- operator: the same run through the operator on the emulator; every step pod reports a hit, as the step
  runner does (one short pod per step), against a run of one trivial step.
- step runner: what a hit costs inside its pod, ``orchest step`` answering from the cache, against
  ``orchest step`` running a trivial script.

The index is filled by recording each step as a successful execution would (``cache.index.remember``)
instead of running the N notebooks first: the lookup path measured is the same, and the set-up stays
seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.recorder import Recorder
from bench.report import Ratio, Result
from bench.target import Arena
from bench.workloads import PIPELINES, RUNS, pipeline, run
from orchest_operator.cache.handoff import handoff
from orchest_operator.cache.index import key_maker, remember
from orchest_operator.cache.key import Ingredients, recipes
from orchest_operator.cache.runplan import encode
from orchest_operator.models import PipelineSpec
from tests.support.kubelet import Outcome
from tests.support.notebooks import write_notebook, write_pipeline

TIMEOUT_PER_STEP = 30.0
ORCHEST = str(Path(sys.executable).with_name("orchest"))


def _chain(n: int) -> list[dict[str, Any]]:
    return [
        {"name": f"nb{i}", "file": f"nb{i}.ipynb", **({"dependsOn": [f"nb{i - 1}"]} if i else {})}
        for i in range(n)
    ]


def _notebooks(directory: Path, n: int, *, cache: bool) -> Path:
    for i in range(n):
        write_notebook(directory / f"nb{i}.ipynb", ("parameters", "n = 10"), "total = sum(range(n))")
    return write_pipeline(directory, {"cache": cache, "steps": _chain(n)})


def _fill_index(directory: Path, spec: PipelineSpec, pipeline_name: str, default_image: str = "") -> None:
    maker = key_maker(directory, recipes(spec, default_image=default_image))
    for step in spec.steps:
        made = maker.ingredients(step.name)
        assert isinstance(made, Ingredients)
        remember(directory, pipeline_name, step.name, "seed", made, [])


def _orchest_run(directory: Path, expect: str) -> float:
    began = time.perf_counter()
    done = subprocess.run([ORCHEST, "run", "pipeline.yaml"], cwd=directory, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"orchest run failed ({done.returncode}):\n{done.stdout[-800:]}")
    return wall


def _local(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orchest-bench-cache-") as tmp:
        cached, trivial = Path(tmp, "cached"), Path(tmp, "trivial")
        cached.mkdir()
        trivial.mkdir()
        spec = PipelineSpec.model_validate({"cache": True, "steps": _chain(n)})
        _notebooks(cached, n, cache=True)
        _fill_index(cached, spec, "test")
        _notebooks(trivial, 1, cache=False)
        # Interleaved, each twice: the machine is shared and noisy; the better of two is kept.
        all_cached, one_step = [], []
        for _ in range(2):
            all_cached.append(_orchest_run(cached, f"({n} cached)"))
            one_step.append(_orchest_run(trivial, "1/1 steps succeeded"))
    return {"all_cached_s": min(all_cached), "one_trivial_step_s": min(one_step)}


def _step(directory: Path, file: str, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "orchest_operator.cli.step", "--file", file, "--step", "s", "--run", "r"]
    variables = {**os.environ, "ORCHEST_TERMINATION_LOG": str(directory / "termination"), **env}
    began = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=variables, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"orchest step failed:\n{done.stdout[-800:]}{done.stderr[-800:]}")
    return time.perf_counter() - began


def _step_runner(n: int) -> dict[str, float]:
    """A hit at the end of an N-step chain (its key needs every step's file) against a trivial script."""
    with tempfile.TemporaryDirectory(prefix="orchest-bench-cache-step-") as tmp:
        directory = Path(tmp)
        _notebooks(directory, n, cache=True)
        (directory / "trivial.py").write_text("pass\n")
        spec = PipelineSpec.model_validate({"cache": True, "steps": _chain(n)})
        _fill_index(directory, spec, "p", "runner")
        last = f"nb{n - 1}"
        cache = handoff(spec, last, pipeline="p", default_image="runner")
        assert cache is not None
        hit_env = {"ORCHEST_CACHE": cache.wire(), "ORCHEST_STEP": last}
        hits, runs = [], []
        for _ in range(3):
            hits.append(_step(directory, f"{last}.ipynb", hit_env))
            assert json.loads((directory / "termination").read_text())["cachedFrom"] == "seed"
            runs.append(_step(directory, "trivial.py", {}))
    return {"hit_s": min(hits), "trivial_script_s": min(runs)}


async def _operator_run(
    arena: Arena, recorder: Recorder, tag: str, steps: list[dict[str, Any]], **spec: Any
) -> float:
    api, ns = arena.client("setup"), arena.namespace
    await api.create(PIPELINES, pipeline(tag, ns, steps, arena.image, **spec))
    began = time.perf_counter()
    await api.create(RUNS, run(tag, ns, tag))
    await recorder.wait(
        lambda: (tag, "Succeeded") in recorder.run_phase or (tag, "Failed") in recorder.run_phase,
        TIMEOUT_PER_STEP * len(steps),
        f"run {tag} finished",
    )
    if (tag, "Succeeded") not in recorder.run_phase:
        raise RuntimeError(f"run {tag} failed: {recorder.run_reason.get(tag)}")
    return recorder.run_phase[(tag, "Succeeded")] - began


def _env(job: dict[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", [])}


async def bench_cache(arena: Arena, n: int, job_complete_delay: float, pod_seconds: float = 0.2) -> Result:
    result = Result(
        "cache", {"notebooks": n, "job_complete_delay_s": job_complete_delay, "pod_seconds": pod_seconds}
    )
    local = await asyncio.to_thread(_local, n)
    pod = await asyncio.to_thread(_step_runner, n)
    hit = json.dumps({"message": "same inputs as in run seed", "cachedFrom": "seed"})
    mode = {"plan": "all"}

    def outcome(job: dict[str, Any], pod: dict[str, Any]) -> Outcome:
        env = _env(job)
        if "ORCHEST_PLAN" in env:  # the run's planning pod
            if mode["plan"] == "broken":
                return Outcome(succeed=False, message="planning off for this measurement", run_time=0.0)
            names = [s["name"] for s in json.loads(env["ORCHEST_PLAN"])["spec"]["steps"]]
            found = {name: "seed" for name in names} if mode["plan"] == "all" else {}
            return Outcome(message=encode(names, found), run_time=pod_seconds)
        return Outcome(message=hit if "ORCHEST_CACHE" in env else None, run_time=pod_seconds)

    operator: dict[str, float] = {}
    if arena.fake_kubelet:
        async with (
            arena.kubelet(pod_seconds, job_complete_delay, outcome=outcome),
            Recorder(arena.client("recorder"), arena.namespace) as recorder,
        ):
            steps = [{**s, "file": "x.py"} for s in _chain(n)]
            one = steps[:1]
            operator["one_trivial_step_s"] = await _operator_run(arena, recorder, "one", one)
            operator["all_cached_s"] = await _operator_run(arena, recorder, "cached", steps, cache=True)
            mode["plan"] = "broken"
            operator["all_cached_pod_per_step_s"] = await _operator_run(
                arena, recorder, "per-step", steps, cache=True
            )
            mode["plan"] = "none"
            operator["one_step_planned_miss_s"] = await _operator_run(
                arena, recorder, "miss", one, cache=True
            )
            operator["one_trivial_step_again_s"] = await _operator_run(arena, recorder, "one-b", one)
    result.measurements = {"local": local, "operator": operator, "step_runner": pod}
    result.ratios += [
        Ratio("local.all_cached/one_step", "local.all_cached_s", "local.one_trivial_step_s"),
        Ratio("operator.all_cached/one_step", "operator.all_cached_s", "operator.one_trivial_step_s"),
        Ratio(
            "operator.pod_per_step/one_step",
            "operator.all_cached_pod_per_step_s",
            "operator.one_trivial_step_s",
        ),
        Ratio(
            "operator.planned_miss/one_step",
            "operator.one_step_planned_miss_s",
            "operator.one_trivial_step_s",
        ),
        Ratio("step_runner.hit/trivial_script", "step_runner.hit_s", "step_runner.trivial_script_s"),
    ]
    result.notes += [
        f"local: `orchest run` (a process) of {n} chained notebooks, every one in the cache, against "
        "`orchest run` of one trivial notebook without cache; the better of two interleaved runs each",
        f"operator: run created -> run seen Succeeded on the emulator; every pod (fake kubelet) takes "
        f"{pod_seconds} s, standing for a real pod's scheduling and start; all_cached: the run's planning "
        "pod finds every step (the design kept); all_cached_pod_per_step: the planning pod fails at once and "
        "every step's own pod reports the hit (the design of one short pod per hit)",
        "operator.planned_miss: a one-step caching run whose planning pod finds nothing: what planning adds "
        "to a run that reuses nothing (one pod before the first step)",
        "baseline: a one-step run with no cache, timed first and last (one_trivial_step_again_s)",
        f"step_runner: `orchest step` answering a hit for the last step of the chain (its key hashes all "
        f"{n} notebooks) against `orchest step` of a one-line script; the best of three",
        "the index is filled as successful executions would fill it, without running the notebooks",
    ]
    return result
