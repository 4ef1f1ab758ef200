"""One list-then-watch per kind (and per namespace asked for), shared by every open page.

Pages never talk to the API server about objects: they read the informers' copies and subscribe to their
changes, so ten open tabs cost the API server what one does. A watch that ends is resumed from the last
resourceVersion; a 410 Gone lists again; a kind that is not installed (404) is checked again later, so
PipelineJobs appear once their CRD is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from orchest_operator.dashboard.client import ApiClient, ApiError, Resource

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]
Keep = Callable[[dict[str, Any]], dict[str, Any]]
WATCH_SECONDS = 300
ABSENT_RECHECK_SECONDS = 60.0
MAX_BACKOFF = 30.0


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


class Informer:
    """The objects of one kind in the namespaces asked for (None: all), kept current by watches."""

    def __init__(
        self,
        client: ApiClient,
        resource: Resource,
        namespaces: Sequence[str] | None,
        *,
        label_selector: str | None = None,
        keep: Keep | None = None,
    ) -> None:
        """``keep`` trims each object to what the pages read (pods are many; their specs are not shown)."""
        self.client = client
        self.resource = resource
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.label_selector = label_selector
        self.keep = keep
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        """Counts changes: what was computed from the objects at one version holds until the next."""
        self.synced = asyncio.Event()
        self.absent = False
        self.error: str | None = None
        self._listed: set[str | None] = set()
        self._listeners: set[Listener] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(obj)`` on every change; returns the function that unsubscribes."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(scope)) for scope in self.scopes]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _notify(self, obj: dict[str, Any]) -> None:
        self.version += 1
        for listener in list(self._listeners):
            listener(obj)

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    async def _follow(self, scope: str | None) -> None:
        backoff = 1.0
        while True:
            try:
                version = await self._list(scope)
                backoff = 1.0
                while version is not None:
                    version = await self._watch(scope, version)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 404:
                    self._mark_absent(scope)
                    await asyncio.sleep(ABSENT_RECHECK_SECONDS)
                    continue
                self.error = f"{self.resource.plural}: {error}"
                log.warning("listing %s failed: %s", self.resource.plural, error)
            except Exception as error:  # the connection broke: keep the copies, retry with backoff
                self.error = f"{self.resource.plural}: {error!r}"
                log.warning("watching %s failed: %r", self.resource.plural, error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _mark_absent(self, scope: str | None) -> None:
        self.absent = True
        self._listed.add(scope)
        if self._listed >= set(self.scopes):
            self.synced.set()

    def _in_scope(self, key: str, scope: str | None) -> bool:
        return scope is None or key.startswith(f"{scope}/")

    async def _list(self, scope: str | None) -> str:
        listing = await self.client.get_json(self.resource.path(scope), self._params())
        items = listing.get("items") or []
        fresh = {}
        for item in items:
            item.setdefault("metadata", {})
            fresh[_key(item)] = self.keep(item) if self.keep else item
        stale = [k for k in self.objects if self._in_scope(k, scope) and k not in fresh]
        for key in stale:
            gone = self.objects.pop(key)
            self._notify(gone)
        for key, item in fresh.items():
            if self.objects.get(key) != item:
                self.objects[key] = item
                self._notify(item)
        self.absent = False
        self.error = None
        self._listed.add(scope)
        if self._listed >= set(self.scopes):
            self.synced.set()
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, scope: str | None, version: str) -> str | None:
        """Follow one watch request; the version to resume from, or None to list again (410 Gone)."""
        params = {
            **self._params(),
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self.client.watch(self.resource.path(scope), params):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return None
                raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or "watch error"))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            key = _key(obj)
            if self.keep is not None:
                obj = self.keep(obj)
            if kind == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            self._notify(obj)
        return version
