"""What the operator hands a step's pod so that the pod can decide about the cache on its own: the
recipes its key needs (``key.closure``), as one JSON environment variable. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchest_operator.cache.key import Recipe, closure, recipe
from orchest_operator.models import PipelineSpec

ENV_CACHE = "ORCHEST_CACHE"
HANDOFF_LIMIT = 100_000
"""Bytes handed to a pod in one environment variable: Linux refuses to start a process with a single
variable over 128 KiB. A step whose recipes are larger (a very long chain without declared outputs) does
not cache; declaring outputs cuts its recipes short."""


@dataclass(frozen=True)
class Handoff:
    pipeline: str
    step: str
    lookup: bool
    """False under a run's ``spec.cache: false``: run the step, still record it."""
    recipes: dict[str, Recipe]

    def wire(self) -> str:
        return json.dumps(
            {
                "pipeline": self.pipeline,
                "step": self.step,
                "lookup": self.lookup,
                "recipes": [r.wire() for r in self.recipes.values()],
            },
            separators=(",", ":"),
        )

    @classmethod
    def of_wire(cls, text: str) -> Handoff:
        """Raises ``ValueError`` on anything but what ``wire`` writes."""
        try:
            data = json.loads(text)
            recipes = {r.name: r for r in map(Recipe.of_wire, data["recipes"])}
            handoff = cls(str(data["pipeline"]), str(data["step"]), bool(data["lookup"]), recipes)
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"${ENV_CACHE} is not what the operator writes: {err}") from None
        if handoff.step not in recipes:
            raise ValueError(f"${ENV_CACHE} has no recipe for step {handoff.step}")
        return handoff


def handoff(
    spec: PipelineSpec,
    step: str,
    *,
    pipeline: str,
    overrides: Mapping[str, Any] | None = None,
    default_image: str = "",
    lookup: bool = True,
) -> Handoff | None:
    """The handoff for one step's pod, or None when the step does not cache."""
    if not spec.caches(step):
        return None
    needed = closure(lambda n: recipe(spec, spec.step(n), overrides, default_image=default_image), step)
    return Handoff(pipeline=pipeline, step=step, lookup=lookup, recipes=needed)
