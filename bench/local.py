"""The local runner: K trivial notebooks by ``orchest run`` against bare papermill over the same notebooks.

Two baselines: the papermill command in a shell-style loop (a process per notebook, as ``orchest run``
starts one ``orchest step`` process per step), and ``papermill.execute_notebook`` called K times in one
process (no interpreter start-up at all: the floor). The same K independent notebooks form a wide DAG,
run once with ``--parallelism 1`` and once with one step per core.
"""

from __future__ import annotations

import asyncio
import os
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


def _timed(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} … failed ({done.returncode}):\n{done.stdout[-800:]}")
    return time.perf_counter() - began


def _papermill_cli(directory: Path, names: list[str]) -> float:
    papermill = str(Path(sys.executable).with_name("papermill"))
    out = directory / "papermill-cli"
    out.mkdir()
    return sum(
        _timed([papermill, "--no-progress-bar", "-k", "python3", n, str(out / n)], directory) for n in names
    )


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


def _orchest_run(directory: Path, parallelism: int) -> float:
    orchest = str(Path(sys.executable).with_name("orchest"))
    return _timed([orchest, "run", "pipeline.yaml", "--parallelism", str(parallelism)], directory)


def _measure(k: int, cores: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="orchest-bench-local-") as tmp:
        directory = Path(tmp)
        names = _notebooks(directory, k)
        return {
            "papermill_cli_s": _papermill_cli(directory, names),
            "papermill_in_process_s": _papermill_in_process(directory, names),
            "orchest_sequential_s": _orchest_run(directory, 1),
            "orchest_parallel_s": _orchest_run(directory, cores),
        }


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
        Ratio("sequential/papermill_in_process", "orchest_sequential_s", "papermill_in_process_s"),
        Ratio("speedup_parallel", "orchest_sequential_s", "orchest_parallel_s", f"~ {cores}"),
    ]
    result.notes += [
        "papermill_cli: `papermill NB OUT -k python3` once per notebook, one after the other",
        "papermill_in_process: papermill.execute_notebook K times in one process (kernel start only)",
        f"orchest_parallel: `orchest run --parallelism {cores}` (a step per core), same K notebooks",
    ]
    return result
