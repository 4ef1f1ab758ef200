"""One worker per key that runs while the key is dirty: many pokes, few reconciles, no time-based batching.

A burst of watch events about one run (200 pods finishing) marks it dirty 200 times but reconciles it a
handful of times; a single event is acted on at once. A failed pass is retried with backoff, so work
that must eventually happen (admitting the next queued run, pruning history) is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


class Coalescer(Generic[K]):
    def __init__(self, work: Callable[[K, float | None], Awaitable[None]], name: str) -> None:
        """``work(key, poked_at)`` does one pass; ``poked_at`` is when the first unhandled poke came."""
        self._work = work
        self._name = name
        self._dirty: set[K] = set()
        self._workers: dict[K, asyncio.Task[None]] = {}
        self._poked_at: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def poke(self, key: K) -> None:
        self._poked_at.setdefault(key, time.perf_counter())
        self._dirty.add(key)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._run(key), name=f"{self._name} {key}")

    def poke_later(self, key: K, delay: float) -> None:
        """Poke ``key`` after ``delay`` seconds, replacing an earlier wake-up of the same key."""
        self.cancel_wakeup(key)

        def wake() -> None:
            self._timers.pop(key, None)
            self.poke(key)

        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), wake)

    def poke_within(self, key: K, delay: float) -> None:
        """Poke ``key`` within ``delay`` seconds: an earlier wake-up stays, a later one is brought forward."""
        handle = self._timers.get(key)
        if handle is None or handle.when() > asyncio.get_running_loop().time() + delay:
            self.poke_later(key, delay)

    def has_wakeup(self, key: K) -> bool:
        return key in self._timers

    def cancel_wakeup(self, key: K) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)
        self.cancel_wakeup(key)

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _run(self, key: K) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                try:
                    await self._work(key, self._poked_at.pop(key, None))
                    self._failures.pop(key, None)
                except Exception as err:  # a failed pass is retried, never fatal
                    attempt = self._failures.get(key, 0)
                    self._failures[key] = attempt + 1
                    delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                    log.warning("%s of %s failed (%s); retrying in %.0fs", self._name, key, err, delay)
                    self.poke_later(key, delay)
        finally:
            self._workers.pop(key, None)
