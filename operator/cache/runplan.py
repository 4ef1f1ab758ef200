"""The run's planning pod, as the operator sees it (pure): whether a run gets one, and its answer.

Before any step of a run starts, one pod looks every selected step up in the cache (``cache.plan``) and
names, in its termination message, the steps it found there and the runs they reuse. Only steps whose
upstream steps are all found can be decided this early; the others still ask the cache in their own pod,
once their upstream steps have run. A termination message holds at most 4 KiB, so steps are given by
their position in the run's selection, one byte each, pointing into a list of the runs reused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from orchest_operator.models import PipelineSpec

PLAN_STEP = "plan.orchest"
"""The step label of the planning Job: a dot never appears in a step name, so no step can take it."""
LIMIT = 4096


def wants_plan(spec: PipelineSpec, selected: Sequence[str], use_cache: bool) -> bool:
    return use_cache and any(spec.caches(name) for name in selected)


def encode(selected: Sequence[str], cached: Mapping[str, str], limit: int = LIMIT) -> str:
    """The termination message naming ``cached`` (step → run reused); when it would not fit, the steps
    of the last runs listed are left out (they will ask the cache in their own pod)."""
    runs = list(dict.fromkeys(cached[n] for n in selected if n in cached))[:255]
    while True:
        index = {run: i + 1 for i, run in enumerate(runs)}
        marks = bytes(index.get(cached.get(n, ""), 0) for n in selected)
        text = json.dumps({"runs": runs, "marks": base64.b64encode(marks).decode()})
        if len(text.encode()) <= limit or not runs:
            return text
        runs.pop()


def decode(text: str | None, selected: Sequence[str]) -> dict[str, str] | None:
    """Step → run reused, from the planning pod's termination message; None when it is not one."""
    try:
        data = json.loads(text or "")
        runs = [str(r) for r in data["runs"]]
        marks = base64.b64decode(data["marks"], validate=True)
    except (ValueError, KeyError, TypeError):
        return None
    if len(marks) != len(selected) or any(m > len(runs) for m in marks):
        return None
    return {name: runs[m - 1] for name, m in zip(selected, marks, strict=True) if m}
