"""Draw a pipeline's DAG as Mermaid or Graphviz text, coloured by step phase when a run is given.

The text formats are written here, with no dependency; SVG and PNG are Graphviz's ``dot`` rendering the
``dot`` text, when it is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from orchest_operator.dag import Dag
from orchest_operator.models import PipelineRunStatus, PipelineSpec, StepPhase

TEXT_FORMATS = ("mermaid", "dot")
IMAGE_FORMATS = ("svg", "png")

# (fill, border): light fills keep the black labels readable.
COLOURS = {
    StepPhase.PENDING: ("#f1f3f5", "#868e96"),
    StepPhase.RUNNING: ("#d0ebff", "#1c7ed6"),
    StepPhase.SUCCEEDED: ("#d3f9d8", "#2f9e44"),
    StepPhase.FAILED: ("#ffe3e3", "#e03131"),
    StepPhase.SKIPPED: ("#fff3bf", "#f08c00"),
    StepPhase.CANCELLED: ("#f3d9fa", "#ae3ec9"),
    StepPhase.REUSED: ("#c5f6fa", "#0c8599"),
    StepPhase.CACHED: ("#c5f6fa", "#0c8599"),
}


class GraphError(Exception):
    """The graph cannot be produced (a bad run file, Graphviz missing or failing); one readable line."""


def mermaid(spec: PipelineSpec, phases: Mapping[str, StepPhase] | None = None) -> str:
    """A Mermaid flowchart. Nodes get ids ``s0``, ``s1``…: a step named like a Mermaid keyword (``end``)
    would otherwise break the chart."""
    dag = Dag.of(spec)
    ids = {name: f"s{i}" for i, name in enumerate(dag.order)}
    lines = ["flowchart LR"]
    for name in dag.order:
        label = "<br/>".join(_label(spec, name, phases))
        lines.append(f'    {ids[name]}["{_mermaid_escape(label)}"]')
    for source, target in _edges(dag):
        lines.append(f"    {ids[source]} --> {ids[target]}")
    if phases:
        used = sorted({phases[n] for n in dag.order if n in phases}, key=list(COLOURS).index)
        for phase in used:
            fill, stroke = COLOURS[phase]
            lines.append(f"    classDef {phase.value.lower()} fill:{fill},stroke:{stroke},color:#212529")
        for phase in used:
            members = ",".join(ids[n] for n in dag.order if phases.get(n) is phase)
            lines.append(f"    class {members} {phase.value.lower()}")
    return "\n".join(lines) + "\n"


def dot(spec: PipelineSpec, phases: Mapping[str, StepPhase] | None = None, *, title: str = "pipeline") -> str:
    """A Graphviz digraph, left to right like the Orchest editor."""
    dag = Dag.of(spec)
    lines = [
        f"digraph {_dot_quote(title)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#495057",'
        ' fontname="Helvetica"];',
        '    edge [color="#495057"];',
    ]
    for name in dag.order:
        attributes = [f"label={_dot_quote(chr(10).join(_label(spec, name, phases)))}"]
        if phases and name in phases:
            fill, stroke = COLOURS[phases[name]]
            attributes += [f'fillcolor="{fill}"', f'color="{stroke}"']
        lines.append(f"    {_dot_quote(name)} [{', '.join(attributes)}];")
    for source, target in _edges(dag):
        lines.append(f"    {_dot_quote(source)} -> {_dot_quote(target)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edges(dag: Dag) -> list[tuple[str, str]]:
    position = {name: i for i, name in enumerate(dag.order)}
    return sorted(dag.graph.edges, key=lambda edge: (position[edge[1]], position[edge[0]]))


def _label(spec: PipelineSpec, name: str, phases: Mapping[str, StepPhase] | None) -> list[str]:
    parts = [name, spec.step(name).file]
    if phases and name in phases:
        parts.append(phases[name].value)
    return parts


def _mermaid_escape(text: str) -> str:
    return text.replace('"', "#quot;")


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_phases(path: Path) -> dict[str, StepPhase]:
    """Step phases out of a local ``run.json`` or a PipelineRun object (``kubectl get -o json``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GraphError(f"{path}: no such run file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise GraphError(f"{path}: not a run record: {err}") from None
    if isinstance(data, dict) and data.get("kind") == "PipelineRun":
        data = data.get("status") or {}
    try:
        status = PipelineRunStatus.model_validate(data)
    except ValueError as err:
        first = str(err).splitlines()
        raise GraphError(f"{path}: not a run record ({first[1] if len(first) > 1 else first[0]})") from None
    return {name: step.phase for name, step in status.steps.items()}


def render(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG from ``dot`` text through Graphviz."""
    program = shutil.which("dot")
    if program is None:
        raise GraphError(
            f"--format {fmt} needs Graphviz: install it (e.g. `apt-get install graphviz` or "
            "`brew install graphviz`) so that `dot` is on PATH, or use --format dot or --format mermaid"
        )
    done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GraphError(f"Graphviz failed: {reason[0] if reason else f'exit code {done.returncode}'}")
    return done.stdout
