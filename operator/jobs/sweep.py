"""A parameter sweep on this machine (``orchest run --matrix``): one local run per combination, each in
its own isolated workspace, at most ``max_parallel`` at once.

The combinations are the same as a PipelineJob's (``reconcile.combinations``), and each run is an
ordinary :class:`~orchest_operator.local.LocalRun`, so a sweep plans and records its runs exactly as
``orchest run`` does one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchest_operator.jobs.reconcile import combinations
from orchest_operator.local import LocalRun, elapsed, new_run_id
from orchest_operator.models import (
    MAX_COMBINATIONS,
    PipelineJobSpec,
    PipelineRunSpec,
    PipelineRunStatus,
    PipelineSpec,
    RunPhase,
    Workspace,
)


class SweepError(ValueError):
    """A sweep that cannot be planned (too many combinations, a bad matrix)."""


@dataclass
class SweepRun:
    index: int
    combination: dict[str, Any]
    run: LocalRun
    status: PipelineRunStatus | None = None
    """The run's final status; ``None`` while it has not finished (or never started)."""

    @property
    def phase(self) -> RunPhase:
        return self.status.phase if self.status is not None else RunPhase.CANCELLED

    @property
    def seconds(self) -> float | None:
        return None if self.status is None else elapsed(self.status.start_time, self.status.completion_time)


def plan(
    spec: PipelineSpec,
    base: Path,
    request: PipelineRunSpec,
    matrix: dict[str, list[Any]],
    *,
    batch: str | None = None,
) -> list[SweepRun]:
    """One isolated run per combination of ``matrix``, on top of the request's own parameters. Raises
    ``SweepError`` beyond 256 combinations and ``dag.PlanError`` when the pipeline cannot be planned."""
    count = 1
    for values in matrix.values():
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise SweepError(f"--matrix gives {count} combinations; a sweep has at most {MAX_COMBINATIONS}")
    job = PipelineJobSpec.model_validate({"pipelineRef": request.pipeline_ref.wire(), "matrix": matrix})
    batch = batch or new_run_id()
    runs = []
    for index, combination in enumerate(combinations(job)):
        own = request.model_copy(
            update={"parameters": {**request.parameters, **combination}, "workspace": Workspace.ISOLATED}
        )
        runs.append(SweepRun(index, combination, LocalRun(spec, base, own, run_id=f"{batch}-{index}")))
    return runs


def execute(
    runs: list[SweepRun], max_parallel: int, on_finish: Callable[[SweepRun], None] | None = None
) -> bool:
    """Run them all, ``max_parallel`` at once (0: all at once), in combination order. ``False`` when it
    was interrupted (Ctrl-C): running runs are cancelled, the others never start."""
    limit = max_parallel or len(runs)
    pending = list(runs)
    futures: dict[Future[PipelineRunStatus], SweepRun] = {}
    with ThreadPoolExecutor(max_workers=max(limit, 1), thread_name_prefix="orchest-sweep") as pool:
        try:
            while pending or futures:
                while pending and len(futures) < limit:
                    item = pending.pop(0)
                    futures[pool.submit(item.run.execute)] = item
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    item = futures.pop(future)
                    item.status = future.result()
                    if on_finish is not None:
                        on_finish(item)
        except KeyboardInterrupt:
            for item in futures.values():
                item.run.cancel()
            for future, item in futures.items():
                item.status = future.result()
                if on_finish is not None:
                    on_finish(item)
            return False
    return True


def all_succeeded(runs: list[SweepRun]) -> bool:
    return all(r.phase is RunPhase.SUCCEEDED for r in runs)
