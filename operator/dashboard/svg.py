"""A pipeline's DAG drawn as SVG, with no Graphviz: layers from networkx's topological generations.

Steps go left to right by generation (a step sits one column right of its latest dependency), and the
order inside a column comes from a few barycenter sweeps, which untangle most crossings of the wide,
shallow DAGs pipelines have. Each step is a ``<g data-step=...>`` whose box carries its phase's colours
as attributes, so the same drawing works as a file (``orchest graph --format svg``) and inside the
dashboard, where the page recolours one step at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

import networkx as nx

BOX_WIDTH = 190
BOX_HEIGHT = 56
COLUMN_GAP = 70
ROW_GAP = 14
MARGIN = 16
_LABEL_CHARS = 26
_SWEEPS = 4

# (fill, border): light fills keep the dark labels readable.
PHASE_COLOURS: dict[str, tuple[str, str]] = {
    "Pending": ("#f1f3f5", "#868e96"),
    "Running": ("#d0ebff", "#1c7ed6"),
    "Succeeded": ("#d3f9d8", "#2f9e44"),
    "Failed": ("#ffe3e3", "#e03131"),
    "Skipped": ("#fff3bf", "#f08c00"),
    "Cancelled": ("#f3d9fa", "#ae3ec9"),
    "Reused": ("#c5f6fa", "#0c8599"),
    "Cached": ("#e3fafc", "#1098ad"),
}
NO_PHASE = ("#ffffff", "#495057")
"""A step drawn without a run, or not part of the run's selection."""
UNKNOWN_PHASE = ("#e9ecef", "#343a40")
"""A phase this version does not know (a newer operator's): drawn plainly, its name still shown."""


def colours(phase: str | None) -> tuple[str, str]:
    """The (fill, border) of a step in ``phase``; ``None`` means not part of a run."""
    if phase is None:
        return NO_PHASE
    return PHASE_COLOURS.get(phase, UNKNOWN_PHASE)


def phase_class(phase: str | None) -> str:
    """A CSS class for a phase; any phase, known or not, gets one made only of safe characters."""
    if phase is None:
        return "phase-none"
    return "phase-" + ("".join(c for c in phase.lower() if c.isalnum()) or "unknown")


@dataclass(frozen=True)
class GraphStep:
    """What the drawing needs of a step."""

    name: str
    file: str
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Each step's box position (top-left corner) and the drawing's size."""

    positions: dict[str, tuple[int, int]]
    width: int
    height: int
    edges: list[tuple[str, str]]


def layout(steps: Sequence[GraphStep]) -> Layout:
    """Columns by topological generation, rows ordered by barycenter sweeps. Dependencies on steps that
    are not in ``steps`` are ignored (a run's snapshot always holds them all)."""
    names = {s.name for s in steps}
    graph = nx.DiGraph()
    graph.add_nodes_from(s.name for s in steps)
    graph.add_edges_from((d, s.name) for s in steps for d in s.depends_on if d in names and d != s.name)
    declared = {s.name: i for i, s in enumerate(steps)}
    try:
        columns = [sorted(c, key=declared.__getitem__) for c in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:  # a cycle cannot be a pipeline; draw it as one column, not crash
        columns = [sorted(names, key=declared.__getitem__)]
    _untangle(graph, columns)
    tallest = max((len(c) for c in columns), default=0)
    height = 2 * MARGIN + tallest * BOX_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    positions: dict[str, tuple[int, int]] = {}
    for x_index, column in enumerate(columns):
        used = len(column) * BOX_HEIGHT + (len(column) - 1) * ROW_GAP
        top = MARGIN + (height - 2 * MARGIN - used) // 2
        for y_index, name in enumerate(column):
            positions[name] = (
                MARGIN + x_index * (BOX_WIDTH + COLUMN_GAP),
                top + y_index * (BOX_HEIGHT + ROW_GAP),
            )
    width = 2 * MARGIN + len(columns) * BOX_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP
    edges = sorted(graph.edges, key=lambda e: (declared[e[1]], declared[e[0]]))
    return Layout(positions=positions, width=width, height=height, edges=edges)


def _untangle(graph: nx.DiGraph, columns: list[list[str]]) -> None:
    """Reorder each column by the mean row of its neighbours in the column before (then after)."""
    if len(columns) < 2:
        return
    row = {n: i for column in columns for i, n in enumerate(column)}
    for sweep in range(_SWEEPS):
        forward = sweep % 2 == 0
        indices = range(1, len(columns)) if forward else range(len(columns) - 2, -1, -1)
        for i in indices:
            neighbours = graph.predecessors if forward else graph.successors
            column = columns[i]

            def barycenter(name: str, neighbours=neighbours) -> float:
                rows = [row[n] for n in neighbours(name)]
                return sum(rows) / len(rows) if rows else row[name]

            column.sort(key=lambda n: (barycenter(n), row[n]))
            for j, name in enumerate(column):
                row[name] = j


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _edge_path(start: tuple[int, int], end: tuple[int, int]) -> str:
    x1, y1 = start[0] + BOX_WIDTH, start[1] + BOX_HEIGHT // 2
    x2, y2 = end[0], end[1] + BOX_HEIGHT // 2
    bend = max((x2 - x1) // 2, 20)
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2 - 6},{y2}"


def step_title(name: str, file: str, phase: str | None) -> str:
    """The hover text of a step's box."""
    return f"{name} ({file})" + (f": {phase}" if phase else "")


def render(
    steps: Sequence[GraphStep],
    phases: Mapping[str, str] | None = None,
    *,
    title: str = "pipeline",
    links: Mapping[str, str] | None = None,
) -> str:
    """The SVG document of ``steps``, each box coloured by its phase in ``phases`` (when given).

    ``links`` maps step names to in-page targets (``#step-x``): the dashboard makes each box a link to
    its row in the step table. Every string from the pipeline is escaped.
    """
    phases = phases or {}
    drawn = layout(steps)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{drawn.width}" '
        f'height="{drawn.height}" viewBox="0 0 {drawn.width} {drawn.height}" role="img" '
        f'aria-label="{escape(title)}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="4" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker></defs>',
        f'<rect class="background" width="{drawn.width}" height="{drawn.height}" fill="#ffffff"/>',
        '<g class="edges" fill="none" stroke="#868e96" stroke-width="1.5">',
    ]
    for source, target in drawn.edges:
        parts.append(
            f'<path d="{_edge_path(drawn.positions[source], drawn.positions[target])}" '
            f'data-from="{escape(source)}" data-to="{escape(target)}" marker-end="url(#arrow)"/>'
        )
    parts.append("</g>")
    parts.append('<g class="steps">')
    for step in steps:
        parts.append(
            _box(step, phases.get(step.name), drawn.positions[step.name], (links or {}).get(step.name))
        )
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


def _box(step: GraphStep, phase: str | None, at: tuple[int, int], link: str | None) -> str:
    fill, stroke = colours(phase)
    x, y = at
    name, file = escape(_short(step.name)), escape(_short(step.file))
    label = escape(phase or "")
    body = (
        f'<g class="step {phase_class(phase)}" data-step="{escape(step.name)}" '
        f'data-phase="{label}" transform="translate({x},{y})">'
        f"<title>{escape(step_title(step.name, step.file, phase))}</title>"
        f'<rect width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" fill="{fill}" stroke="{stroke}" '
        'stroke-width="1.5"/>'
        f'<text x="10" y="18" font-size="13" font-weight="bold" fill="#212529">{name}</text>'
        f'<text x="10" y="34" font-size="11" fill="#495057">{file}</text>'
        f'<text class="phase-label" x="10" y="49" font-size="11" fill="#212529">{label}</text>'
        "</g>"
    )
    if link is None:
        return body
    return f'<a href="{escape(link)}">{body}</a>'


def graph_steps(raw_steps: Iterable[Mapping[str, object]]) -> list[GraphStep]:
    """GraphSteps from the steps of a Pipeline spec as the API returns it (camelCase, maybe partial)."""
    steps = []
    for raw in raw_steps:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            continue
        deps = raw.get("dependsOn") or ()
        steps.append(
            GraphStep(
                name=str(raw["name"]),
                file=str(raw.get("file") or ""),
                depends_on=tuple(str(d) for d in deps) if isinstance(deps, list | tuple) else (),
            )
        )
    return steps
