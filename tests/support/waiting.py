"""Waiting for a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded CI machine or wastes time everywhere else; polling an
in-memory predicate every few milliseconds costs nothing and returns as soon as the state is reached.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not become true in time (an assertion failure for pytest)."""


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    The predicate may be sync (e.g. reading ``cluster.peek(...)``) or async (e.g. an API call against a
    real cluster). On timeout, raises ``WaitTimeout`` naming the condition and its last value.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeout(f"not reached within {timeout}s: {what} (last value: {value!r})")
        await asyncio.sleep(interval)
