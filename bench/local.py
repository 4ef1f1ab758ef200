"""The local runner: K trivial notebooks by ``orchest run`` against bare papermill over the same notebooks.

Two baselines: the papermill command in a shell-style loop (a process per notebook, as ``orchest run``
starts one ``orchest step`` process per step), and ``papermill.execute_notebook`` called K times in one
process (no interpreter start-up at all: the floor). The same K independent notebooks form a wide DAG,
run once with ``--parallelism 1`` and once with one step per core.

Besides the sums, each side's median step is compared. About one notebook run in six waits some 3 s
for its kernel to exit (jupyter_client's shutdown wait), on either side, and over K notebooks the two
sides rarely get the same number of waits: the medians show the typical step without that luck, and
``slow_steps`` counts the waits each side had.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Ratio, Result
from tests.support.notebooks import write_notebook, write_pipeline


def _notebooks(directory: Path, k: int) -> list[str]:
    names = []
    for i in range(k):
        name = f"nb{i}.ipynb"
        write_notebook(directory / name, ("parameters", "n = 10"), "total = sum(range(n))")
        names.append(name)
    write_pipeline(directory, {"steps": [{"name": f"nb{i}", "file": n} for i, n in enumerate(names)]})
    return names


SLOW_STEP_S = 2.0
"""A step this much over its side's median waited on something other than its work (a kernel's exit)."""


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} … failed ({done.returncode}):\n{done.stdout[-800:]}")


def _papermill_cli(directory: Path, names: list[str]) -> list[float]:
    """Each notebook's time, each through its own ``papermill`` process."""
    papermill = str(Path(sys.executable).with_name("papermill"))
    out = directory / "papermill-cli"
    out.mkdir()
    times = []
    for n in names:
        began = time.perf_counter()
        _run([papermill, "--no-progress-bar", "-k", "python3", n, str(out / n)], directory)
        times.append(time.perf_counter() - began)
    return times


def _papermill_in_process(directory: Path, names: list[str]) -> float:
    import papermill

    out = directory / "papermill-lib"
    out.mkdir()
    began = time.perf_counter()
    for n in names:
        papermill.execute_notebook(
            str(directory / n), str(out / n), kernel_name="python3", progress_bar=False, cwd=str(directory)
        )
    return time.perf_counter() - began


def _orchest_run(directory: Path, parallelism: int, steps: set[str]) -> tuple[float, list[float]]:
    """The wall time of ``orchest run``, and when (from its start) each step was reported Succeeded: the
    plain progress lines (``HH:MM:SS  STEP  Succeeded  …``) are read as they come."""
    orchest = str(Path(sys.executable).with_name("orchest"))
    command = [orchest, "run", "pipeline.yaml", "--parallelism", str(parallelism)]
    began = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines, succeeded = [], []
    for line in process.stdout:
        lines.append(line)
        parts = line.split()
        if len(parts) >= 3 and parts[1] in steps and parts[2] == "Succeeded":
            succeeded.append(time.perf_counter() - began)
    wall = time.perf_counter() - began
    if process.wait() != 0 or len(succeeded) != len(steps):
        raise RuntimeError(f"orchest run failed ({process.returncode}):\n{''.join(lines)[-800:]}")
    return wall, succeeded


def _measure(k: int, cores: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orchest-bench-local-") as tmp:
        directory = Path(tmp)
        names = _notebooks(directory, k)
        steps = {f"nb{i}" for i in range(k)}
        cli = _papermill_cli(directory, names)
        in_process = _papermill_in_process(directory, names)
        sequential, ends = _orchest_run(directory, 1, steps)
        parallel, _ = _orchest_run(directory, cores, steps)
    # Run one at a time, a step's time is from the previous step's end (or the command's start) to its
    # own: the runner's work between steps is in it, as each papermill process's start-up is in its time.
    steps_taken = [end - start for start, end in itertools.pairwise([0.0, *ends])]
    return {
        "papermill_cli_s": sum(cli),
        "papermill_in_process_s": in_process,
        "orchest_sequential_s": sequential,
        "orchest_parallel_s": parallel,
        "papermill_cli_step_median_s": statistics.median(cli),
        "orchest_step_median_s": statistics.median(steps_taken),
        "papermill_cli_slow_steps": _slow(cli),
        "orchest_slow_steps": _slow(steps_taken),
    }


def _slow(times: list[float]) -> int:
    median = statistics.median(times)
    return sum(1 for t in times if t > median + SLOW_STEP_S)


async def bench_local(notebooks: int) -> Result:
    cores = os.cpu_count() or 1
    result = Result("local", {"notebooks": notebooks, "parallelism": cores})
    measured = await asyncio.to_thread(_measure, notebooks, cores)
    result.measurements = {
        **measured,
        "overhead_per_step_s": (measured["orchest_sequential_s"] - measured["papermill_cli_s"]) / notebooks,
    }
    result.ratios += [
        Ratio("sequential/papermill_cli", "orchest_sequential_s", "papermill_cli_s", "<= 1.1"),
        Ratio("step_median/papermill_cli", "orchest_step_median_s", "papermill_cli_step_median_s", "<= 1.1"),
        Ratio("sequential/papermill_in_process", "orchest_sequential_s", "papermill_in_process_s"),
        Ratio("speedup_parallel", "orchest_sequential_s", "orchest_parallel_s", f"~ {cores}"),
    ]
    result.notes += [
        "papermill_cli: `papermill NB OUT -k python3` once per notebook, one after the other",
        "step_median: the median step; orchest's steps (run one at a time) are timed from the previous "
        "step's Succeeded line to their own, the first from the command's start",
        f"slow_steps: steps over {SLOW_STEP_S:.0f} s above their side's median, most often a kernel "
        "slow to exit after its shutdown request",
        "papermill_in_process: papermill.execute_notebook K times in one process (kernel start only)",
        f"orchest_parallel: `orchest run --parallelism {cores}` (a step per core), same K notebooks",
    ]
    return result
