"""The harness's emulator, counting requests per client and weighing the operator's status writes.

Every benchmark client sends ``User-Agent: orchest-bench/<role>``; whatever else talks to the emulator is
the operator (kopf's watches and pykube's calls). Counting at the server is exact and adds no hop, which a
counting proxy in front of the operator would. Each status PATCH of a PipelineRun by the operator is
recorded with its body size and the size of the smallest merge patch that leads from the stored status to
the new one, so "no status write larger than needed" is a ratio of two measured numbers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import kmock
from kmock._internal import rendering

from tests.support.api import KubeApi
from tests.support.cluster import (
    CORE_RESOURCES,
    ClusterEmulator,
    orchest_crds,
    write_kubeconfig,
)

AGENT = "orchest-bench"
OPERATOR = "operator"
_VERBS = {"FETCH": "GET", "LIST": "LIST", "WATCH": "WATCH", "CREATE": "POST", "DELETE": "DELETE"}
"""kmock's actions as HTTP-ish verbs; an update stays PATCH or PUT as sent."""


def compact(value: Any) -> int:
    """Bytes of ``value`` as compact JSON: what a client sends and what etcd stores for a custom resource."""
    return len(json.dumps(value, separators=(",", ":")).encode())


def merge_diff(old: Any, new: Any) -> Any:
    """The smallest RFC 7386 merge patch turning ``old`` into ``new`` (maps recurse, lists are replaced)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


@dataclass(frozen=True)
class StatusWrite:
    """One status PATCH of a PipelineRun by the operator."""

    run: str
    body_bytes: int
    needed_bytes: int


@attrs.define(kw_only=True)
class CountingEmulator(ClusterEmulator):
    by_client: collections.defaultdict[str, collections.Counter[str]] = attrs.field(
        factory=lambda: collections.defaultdict(collections.Counter), init=False
    )
    status_writes: list[StatusWrite] = attrs.field(factory=list, init=False)
    latency: float = 0.0
    """Seconds every request but a watch waits before it is served, concurrently with other requests:
    a stand-in for a real API server's round trip (admission, etcd), which the in-process emulator lacks."""

    async def _handle(self, request: rendering.Request) -> Any:
        client = _client(request.headers)
        verb = _verb(request)
        self.by_client[client][verb] += 1
        if self.latency and not verb.startswith("WATCH "):
            await asyncio.sleep(self.latency)
        weigh = (
            client == OPERATOR
            and request.subresource == "status"
            and request.method.value == "PATCH"
            and request.resource is not None
            and str(request.resource.plural) == "pipelineruns"
        )
        before = self._stored(request) if weigh else None
        response = await super()._handle(request)
        if weigh and before is not None:
            after = self._stored(request)
            if after is not None:
                diff = merge_diff(before.get("status") or {}, after.get("status") or {})
                self.status_writes.append(
                    StatusWrite(
                        run=request.name or "",
                        body_bytes=len(request.body),
                        needed_bytes=compact({"status": diff}),
                    )
                )
        return response

    def _stored(self, request: rendering.Request) -> dict[str, Any] | None:
        """The object as stored now; kmock's patches copy on write, so it never changes under us."""
        res = request.resource
        if res is None or res not in self._specs:
            return None
        obj = self._live(res, request.namespace, request.name or "")
        return None if obj is None else obj.raw

    def requests_of(self, client: str) -> collections.Counter[str]:
        return self.by_client[client]


def _client(headers: Mapping[str, str]) -> str:
    agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
    return agent.split("/", 1)[1] if agent.startswith(AGENT + "/") else OPERATOR


def _verb(request: rendering.Request) -> str:
    """``POST batch/v1/jobs``, ``PATCH orchest.io/v1alpha1/pipelineruns/status``, ``LIST v1/pods``."""
    res = request.resource
    if request.action is None or res is None or not res.plural:
        return f"{request.method.value} {request.url.path}"
    verb = _VERBS.get(request.action.value, request.method.value)
    what = f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"
    return f"{verb} {what}" + (f"/{request.subresource}" if request.subresource else "")


@dataclass
class Emulated:
    emulator: CountingEmulator
    url: str
    kubeconfig: Path

    def client(self, role: str) -> KubeApi:
        """A client whose requests count under ``role``."""
        return KubeApi.for_url(self.url, headers={"User-Agent": f"{AGENT}/{role}"})


@contextlib.asynccontextmanager
async def serving(kubeconfig: Path, latency: float = 0.0) -> AsyncIterator[Emulated]:
    """A counting emulator with the harness's resources and orchest's CRDs, on a loopback port."""
    emulator = CountingEmulator(latency=latency)
    for spec in CORE_RESOURCES:
        emulator.register(spec)
    for crd in orchest_crds():
        emulator.register_crd(crd)
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        write_kubeconfig(kubeconfig, url)
        yield Emulated(emulator=emulator, url=url, kubeconfig=kubeconfig)
