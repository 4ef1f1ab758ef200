"""The cache in a step's pod (``orchest step``): decide before running, record after succeeding.

On a cluster only the step's pod sees the pipeline's volume, so the decision is made here, from what the
operator handed over (``handoff``). A hit exits at once and leaves a termination message that the operator
records as ``Cached``. Trouble with the index never fails a step: it is said in the log and the step runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from orchest_operator.cache.handoff import Handoff
from orchest_operator.cache.index import CacheError, decide, key_maker, remember
from orchest_operator.cache.key import Ingredients, Verdict


@dataclass
class PodCache:
    handoff: Handoff
    base: Path
    run: str
    ingredients: Ingredients | None = None

    def before(self, log: TextIO) -> Verdict | None:
        """The hit to report instead of running, or None: run the step (its key is kept for ``after``)."""
        maker = key_maker(self.base, self.handoff.recipes)
        step = self.handoff.step
        try:
            if not self.handoff.lookup:
                found = maker.ingredients(step)
                self.ingredients = found if isinstance(found, Ingredients) else None
                print("orchest: cache: caching is off for this run", file=log, flush=True)
                return None
            verdict = decide(self.base, maker, self.handoff.pipeline, step)
        except CacheError as err:
            print(f"orchest: cache not used: {err}", file=log, flush=True)
            return None
        if verdict.cached:
            print(
                f"orchest: cache: reusing run {verdict.cached_from} ({verdict.reason})", file=log, flush=True
            )
            return verdict
        self.ingredients = verdict.ingredients
        print(f"orchest: cache: runs: {verdict.reason}", file=log, flush=True)
        return None

    def after(self, log: TextIO) -> None:
        """Record the succeeded step under the key it was decided with."""
        if self.ingredients is None:
            return
        recipe = self.handoff.recipes[self.handoff.step]
        try:
            remember(
                self.base,
                self.handoff.pipeline,
                self.handoff.step,
                self.run,
                self.ingredients,
                recipe.outputs,
            )
        except CacheError as err:
            print(f"orchest: succeeded, but not recorded in the cache: {err}", file=log, flush=True)
