"""Watch events that only echo this process's own writes, dropped before kopf processes them.

A fan-out of 999 steps is 999 Job POSTs, and the watch brings 999 ADDED events back. Each tells the
operator what it already knows (the Job it just created, with an empty status), yet kopf spends about
0.3 ms of the operator's one core on each before any handler runs: a worker task and queue for the new
object, its memory, its loggers, the index and event handlers. That is as much as the POST itself. The
cheapest point to skip one is the watch stream, before kopf's multiplexer: kopf has no setting for it,
so ``install`` wraps the function kopf reads each resource's stream from (``infinite_watch``, private
API of kopf 1.4x; ``tests/unit/test_echoes.py`` fails if it moves).

Only events a filter recognises are dropped, and a filter must only recognise events whose content the
operator holds some other way (the run controller keeps the Jobs it created "in flight" until the index
shows them; see ``RunController.is_own_create``). The stream itself is untouched: kopf still tracks each
event's resourceVersion, so a reconnect resumes after the dropped events, and a relist after a restart
(or a 410 Gone) brings every object again as a listing event, which no filter drops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kopf._cogs.clients import watching as kopf_watching

EventFilter = Callable[[Mapping[str, Any]], bool]
"""Given a raw watch event (``{"type": ..., "object": ...}``), ``True`` to drop it."""
ResourceKey = tuple[str, str, str]  # (group, version, plural), as in ``watching.JOBS``

_filters: dict[ResourceKey, EventFilter] = {}
_original = kopf_watching.infinite_watch


def skip(resource: ResourceKey, drop: EventFilter) -> None:
    """Drop the events of ``resource`` that ``drop`` recognises (one filter per resource; replaces)."""
    _filters[resource] = drop


def clear() -> None:
    _filters.clear()


async def _filtered(**kwargs: Any) -> AsyncIterator[Any]:
    resource = kwargs["resource"]
    key = (resource.group, resource.version, resource.plural)
    async with contextlib.aclosing(_original(**kwargs)) as stream:
        async for event in stream:
            drop = _filters.get(key)
            if drop is not None and isinstance(event, dict) and drop(event):
                continue
            yield event


def install() -> None:
    """Route every kopf watch stream through the filters (idempotent)."""
    kopf_watching.infinite_watch = _filtered  # type: ignore[assignment]
