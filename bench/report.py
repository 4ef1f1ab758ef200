"""What a benchmark hands back: measured numbers, ratios computed from them, a table and a JSON file.

A ratio never holds a number of its own: it names the two measurements it divides, so the JSON can be
checked (and re-derived) by anyone reading it, and a target is a reference point, never a pass/fail.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Number = float | int | None


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0 to 100) by linear interpolation between the closest ranks."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(samples: Sequence[float]) -> dict[str, Number]:
    """Count, p50/p95/p99 and max of a list of samples (seconds stay seconds)."""
    return {
        "count": len(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "max": max(samples) if samples else None,
    }


@dataclass(frozen=True)
class Ratio:
    name: str
    numerator: str
    """Dotted path of a measurement, e.g. ``operator.wall_s``."""
    denominator: str
    target: str | None = None
    """What the issue aims for, as text (``<= 1.2``); reported next to the ratio, never enforced."""


@dataclass
class Result:
    name: str
    parameters: dict[str, Any]
    measurements: dict[str, Any] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def value(self, path: str) -> Number:
        node: Any = self.measurements
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, int | float) and not isinstance(node, bool) else None

    def ratio_value(self, ratio: Ratio) -> float | None:
        top, bottom = self.value(ratio.numerator), self.value(ratio.denominator)
        if top is None or not bottom:
            return None
        return top / bottom

    def as_json(self, target: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "target": dict(target),
            "parameters": self.parameters,
            "measurements": self.measurements,
            "ratios": {
                r.name: {
                    "value": self.ratio_value(r),
                    "numerator": r.numerator,
                    "denominator": r.denominator,
                    "target": r.target,
                }
                for r in self.ratios
            },
            "notes": self.notes,
        }


def repeated(results: Sequence[Result]) -> str:
    """Each ratio over repeated runs of one benchmark (``--repeat``): on a shared machine one run can be
    a quarter off the next, so a change is judged by the spread, not by a single value."""
    first = results[0]
    lines = [f"== {first.name}: each ratio over {len(results)} runs"]
    width = max((len(r.name) for r in first.ratios), default=5)
    lines.append(f"  {'ratio':<{width}}  {'min':>8}  {'median':>8}  {'max':>8}  {'target':>8}")
    for ratio in first.ratios:
        values = [v for v in (result.ratio_value(ratio) for result in results) if v is not None]
        low, mid, high = (min(values), percentile(values, 50), max(values)) if values else (None,) * 3
        cells = "  ".join(f"{_fmt(v):>8}" for v in (low, mid, high))
        lines.append(f"  {ratio.name:<{width}}  {cells}  {ratio.target or '':>8}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def write(result: Result, target: Mapping[str, Any], directory: Path) -> Path:
    """``<directory>/<name>-<UTC timestamp>.json``; the directory is created when missing."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{result.name}-{stamp}.json"
    path.write_text(json.dumps(result.as_json(target), indent=2) + "\n")
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _flatten(prefix: str, node: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), value)
    elif isinstance(node, list) and len(node) > 8:
        yield prefix, f"[{len(node)} values]"
    else:
        yield prefix, node


def table(result: Result) -> str:
    """The measurements, then the ratios with what they divide and the issue's target."""
    rows = [(key, _fmt(value)) for key, value in _flatten("", result.measurements)]
    width = max((len(k) for k, _ in rows), default=10)
    lines = [f"== {result.name} " + " ".join(f"{k}={v}" for k, v in result.parameters.items())]
    lines += [f"  {key:<{width}}  {value}" for key, value in rows]
    if result.ratios:
        name_w = max(len(r.name) for r in result.ratios)
        lines.append(f"  {'ratio':<{name_w}}  {'value':>8}  {'target':>8}  numerator / denominator")
        for r in result.ratios:
            lines.append(
                f"  {r.name:<{name_w}}  {_fmt(result.ratio_value(r)):>8}  {r.target or '':>8}  "
                f"{r.numerator} / {r.denominator}"
            )
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def requests_per_step(counts: Mapping[str, int] | None, steps: int) -> dict[str, Any] | None:
    """Requests per step, by verb and resource; watches are long-lived streams and left out."""
    if counts is None:
        return None
    calls = {k: v for k, v in counts.items() if not k.startswith("WATCH ") and v > 0}
    return {
        "total": sum(calls.values()) / steps,
        "by_request": {k: round(v / steps, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
    }
