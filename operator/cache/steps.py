"""The cache as one run uses it, step by step: ask before a step starts, record after it succeeded.

The local runner and ``orchest step`` in a step's pod both go through ``StepCache``, so a step is judged
and recorded the same way wherever it runs. Trouble with the index never fails a step: the answer says
why the cache was not used and the step runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchest_operator.cache.index import CacheError, decide, remember
from orchest_operator.cache.key import Ingredients, KeyMaker


@dataclass(frozen=True)
class Answer:
    cached_from: str | None
    """The run whose execution is reused; None: run the step."""
    message: str | None
    """Why (None for a step that does not cache: nothing to say)."""
    reason: str | None = None
    """For a hit, the reason alone (``message`` is the same then)."""


@dataclass
class StepCache:
    base: Path
    pipeline: str
    run: str
    maker: KeyMaker
    lookup: bool = True
    """False under ``--no-cache`` / ``spec.cache: false``: every step runs, and is still recorded."""
    _decided: dict[str, Ingredients] = field(default_factory=dict)

    def ask(self, step: str) -> Answer:
        """Reuse or run ``step`` now; a step that runs keeps the key it was decided with for ``record``."""
        if not self.maker.recipes[step].cache:
            return Answer(None, None)
        try:
            if not self.lookup:
                made = self.maker.ingredients(step)
                if isinstance(made, Ingredients):
                    self._decided[step] = made
                return Answer(None, "caching is off for this run")
            verdict = decide(self.base, self.maker, self.pipeline, step)
        except CacheError as err:
            return Answer(None, f"cache not used: {err}")
        if verdict.cached:
            return Answer(verdict.cached_from, verdict.reason, verdict.reason)
        if verdict.ingredients is not None:
            self._decided[step] = verdict.ingredients
        return Answer(None, verdict.reason)

    def record(self, step: str) -> str | None:
        """Record ``step``, which succeeded; a message when that failed (the step still succeeded)."""
        made = self._decided.get(step)
        if made is None:
            return None
        try:
            remember(self.base, self.pipeline, step, self.run, made, self.maker.recipes[step].outputs)
        except CacheError as err:
            return f"succeeded, but not recorded in the cache: {err}"
        return None
