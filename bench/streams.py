"""One resource of a namespace as a stream of objects, for the benchmark's watchers (its recorder and the
bare engine): list, then watch from the list's version, resuming after disconnects (a real server closes
watches every few minutes), and list again when the server says that version is too old."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.support.api import ApiError, KubeApi


async def objects(
    api: KubeApi,
    resource: str,
    namespace: str,
    *,
    version: str | None = None,
    listed: asyncio.Event | None = None,
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event type, object)`` pairs; listed objects come as ``ADDED``. With ``version``, the stream
    starts there instead of listing first. ``listed`` is set once the first list has been yielded."""
    while True:
        try:
            if version is None:
                items, version = await api.list_with_version(resource, namespace)
                for obj in items:
                    yield "ADDED", obj
                if listed is not None:
                    listed.set()
            async for event in api.watch(resource, namespace, resource_version=version):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    version = None
                    break
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                yield str(event.get("type", "")), obj
        except (aiohttp.ClientError, ApiError, OSError):
            await asyncio.sleep(0.1)
