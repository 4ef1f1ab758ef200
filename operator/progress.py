"""How ``orchest run`` shows a run: a live table on a terminal, one line per change otherwise (CI logs,
pipes), and the same summary at the end either way."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchest_operator.local import Reporter, elapsed
from orchest_operator.models import PipelineRunStatus, StepPhase, StepStatus

STYLE = {
    StepPhase.PENDING: "dim",
    StepPhase.RUNNING: "bold blue",
    StepPhase.SUCCEEDED: "green",
    StepPhase.FAILED: "bold red",
    StepPhase.SKIPPED: "yellow",
    StepPhase.CANCELLED: "magenta",
    StepPhase.REUSED: "cyan",
    StepPhase.CACHED: "cyan",
}


def reporter_for(stream: TextIO) -> Reporter:
    """A live display when ``stream`` is a terminal, plain lines otherwise."""
    console = Console(file=stream)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveReporter(console)
    return PlainReporter(stream)


def duration(step: StepStatus) -> str:
    seconds = elapsed(step.start_time, step.completion_time)
    return "" if seconds is None else f"{seconds:.1f}s"


class PlainReporter:
    """One line whenever a step changes phase: readable in a CI log and easy to grep."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.seen: dict[str, StepPhase] = {}

    def update(self, status: PipelineRunStatus) -> None:
        width = max((len(n) for n in status.steps), default=0)
        for name, step in status.steps.items():
            if self.seen.get(name, StepPhase.PENDING) is step.phase:
                continue
            self.seen[name] = step.phase
            clock = datetime.now().strftime("%H:%M:%S")
            took = duration(step) if step.phase.finished else ""
            detail = "  ".join(part for part in (took, step.message or "") if part)
            line = f"{clock}  {name:<{width}}  {step.phase.value:<9}  {detail}".rstrip()
            print(line, file=self.stream, flush=True)

    def close(self, status: PipelineRunStatus) -> None:
        self.update(status)


class LiveReporter:
    """A table redrawn in place while the run goes, left on screen when it ends."""

    def __init__(self, console: Console) -> None:
        self.status: PipelineRunStatus | None = None
        self.live = Live(console=console, refresh_per_second=4, get_renderable=self._render)
        self.live.start()

    def update(self, status: PipelineRunStatus) -> None:
        self.status = status

    def close(self, status: PipelineRunStatus) -> None:
        self.status = status
        self.live.refresh()
        self.live.stop()

    def _render(self) -> RenderableType:
        if self.status is None:
            return Text("starting…")
        return steps_table(self.status)


def steps_table(status: PipelineRunStatus) -> Table:
    table = Table(box=None, pad_edge=False, title_justify="left")
    table.add_column("step")
    table.add_column("phase")
    table.add_column("time", justify="right")
    table.add_column("message", overflow="fold")
    for name, step in status.steps.items():
        phase = Text(step.phase.value, style=STYLE[step.phase])
        table.add_row(name, phase, duration(step), step.message or "")
    return table


def summary(status: PipelineRunStatus, run_id: str, run_dir: Path) -> list[str]:
    """The lines printed when a run ends: outcome, where the notebooks and logs are, what failed."""
    where = _display_path(run_dir)
    seconds = elapsed(status.start_time, status.completion_time) or 0.0
    cached = sum(1 for step in status.steps.values() if step.phase is StepPhase.CACHED)
    reused = f" ({cached} cached)" if cached else ""
    outcome = f"{status.progress} steps succeeded{reused} in {seconds:.1f}s"
    lines = [f"Run {run_id} {status.phase.value}: {outcome}"]
    lines.append(f"Executed notebooks and logs: {where}{os.sep}")
    lines.append(f"Run record: {_display_path(run_dir / 'run.json')}")
    for name, step in status.steps.items():
        if step.phase is StepPhase.FAILED:
            lines.append(f"  {name} failed: {step.message} (log: {_display_path(run_dir / f'{name}.log')})")
    return lines


def _display_path(path: Path) -> str:
    """Relative to the current directory when below it: shorter, and what the user typed."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
