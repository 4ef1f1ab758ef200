"""The cache in a step's pod (``orchest step``): decide before running, record after succeeding.

On a cluster only the step's pod sees the pipeline's volume, so a step the run's planning pod could not
decide is decided here, from what the operator handed over (``handoff``). A hit exits at once and leaves a
termination message that the operator records as ``Cached``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from orchest_operator.cache.handoff import Handoff
from orchest_operator.cache.index import key_maker
from orchest_operator.cache.key import hit_message
from orchest_operator.cache.steps import StepCache


class PodCache:
    def __init__(self, handoff: Handoff, base: Path, run: str) -> None:
        self.step = handoff.step
        self.cache = StepCache(base, handoff.pipeline, run, key_maker(base, handoff.recipes), handoff.lookup)

    def before(self, log: TextIO) -> str | None:
        """The termination message of a hit, to leave instead of running; None: run the step."""
        answer = self.cache.ask(self.step)
        if answer.cached_from is not None:
            print(f"orchest: cache: reusing run {answer.cached_from} ({answer.reason})", file=log, flush=True)
            return hit_message(answer.cached_from, answer.reason or "")
        if answer.message:
            print(f"orchest: cache: runs: {answer.message}", file=log, flush=True)
        return None

    def after(self, log: TextIO) -> None:
        problem = self.cache.record(self.step)
        if problem:
            print(f"orchest: {problem}", file=log, flush=True)
