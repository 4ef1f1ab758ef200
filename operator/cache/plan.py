"""``orchest plan``: for each selected step, ``run`` or ``cached`` and the first reason, before running.

A step decided at run time sees its upstream steps finished; a plan made beforehand cannot know what an
upstream step that will run is going to write, so such a step is planned to run ("upstream X will run")
unless one of its own ingredients already differs, which is then the reason given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchest_operator.cache.index import Index, decide, key_maker
from orchest_operator.cache.key import Ingredients, Record, own_difference, recipes
from orchest_operator.dag import Dag
from orchest_operator.models import PipelineSpec


@dataclass(frozen=True)
class Planned:
    step: str
    cached: bool
    reason: str
    cached_from: str | None = None
    key: str | None = None

    def wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "action": "cached" if self.cached else "run"}
        data["reason"] = self.reason
        if self.cached_from:
            data["cachedFrom"] = self.cached_from
        if self.key:
            data["key"] = self.key
        return data


def plan(
    base: Path,
    spec: PipelineSpec,
    pipeline: str,
    selected: Sequence[str],
    *,
    parameters: dict[str, Any] | None = None,
    use_cache: bool = True,
    default_image: str = "",
) -> list[Planned]:
    """What a run of ``selected`` would do now, in topological order. Raises ``CacheError``."""
    dag = Dag.of(spec)
    maker = key_maker(base, recipes(spec, parameters, default_image=default_image))
    index = Index(base)
    will_run: set[str] = set()
    out: list[Planned] = []
    for name in selected:
        if not use_cache:
            planned = Planned(name, False, "caching is off for this run")
        elif not spec.caches(name):
            planned = Planned(name, False, "caching is off for this step")
        else:
            waits_for = [d for d in dag.upstream(name) if d in will_run]
            verdict = decide(base, maker, pipeline, name, use=False)
            if waits_for and verdict.ingredients is not None:
                latest = index.latest(pipeline, name)
                own = _own(latest, verdict.ingredients)
                reason = own or f"upstream {sorted(waits_for)[0]} will run"
                planned = Planned(name, False, reason, key=verdict.key)
            elif waits_for:
                planned = Planned(name, False, verdict.reason)
            else:
                planned = Planned(name, verdict.cached, verdict.reason, verdict.cached_from, verdict.key)
        if not planned.cached:
            will_run.add(name)
        out.append(planned)
    return out


def _own(latest: Record | str | None, made: Ingredients) -> str | None:
    if isinstance(latest, Record):
        return own_difference(latest.ingredients, made)
    if isinstance(latest, str):
        return f"cache record unusable: {latest}"
    return "no earlier execution"
