"""Running a real kopf operator in-process against the emulator.

kopf's ``KopfRunner`` runs the operator in a thread with its own event loop; the emulator is served by the
test's loop, so everything blocking here (stopping joins the thread) goes through ``asyncio.to_thread`` to
keep the server answering. kopf registers handlers in one process-wide registry at import time; an operator
started here gets a registry with only the handlers defined in its own module (and sub-modules), so the
demo operator's handlers never run inside an orchest operator test and vice versa.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import kopf
from kopf._core.intents import registries  # SmartOperatorRegistry adds the login handlers
from kopf.testing import KopfRunner

from tests.support.cluster import Cluster, ResourceSpec
from tests.support.waiting import wait_for

_PARTS = ("_activities", "_indexing", "_watching", "_spawning", "_changing", "_webhooks")
_RESOURCE_PARTS = ("_indexing", "_watching", "_spawning", "_changing")
_original_registry: list[kopf.OperatorRegistry] = []


def _process_registry() -> kopf.OperatorRegistry:
    """The registry module-level decorators write into (kopf's CLI replaces the default while it runs)."""
    if not _original_registry:
        _original_registry.append(kopf.get_default_registry())
    kopf.set_default_registry(_original_registry[0])
    return _original_registry[0]


def registry_for(module: str, include: Sequence[str] = ()) -> kopf.OperatorRegistry:
    """A registry with kopf's built-in login handlers plus the handlers whose function lives in ``module``
    (or a sub-module of it, or of a package named in ``include``), imported here if it was not yet."""
    source = _process_registry()
    importlib.import_module(module)
    prefixes = (module, *include)
    target = registries.SmartOperatorRegistry()
    found = 0
    for part in _PARTS:
        for handler in getattr(source, part).get_all_handlers():
            origin = getattr(handler.fn, "__module__", "") or ""
            if any(origin == prefix or origin.startswith(prefix + ".") for prefix in prefixes):
                getattr(target, part).append(handler)
                found += 1
    if not found:
        raise LookupError(
            f"no kopf handlers of {module!r} are in the process-wide registry: handlers registered with an "
            "explicit registry= are not supported, and decorated functions defined in other modules need "
            "include=('their.package',)"
        )
    return target


def watched_resources(registry: kopf.OperatorRegistry, cluster: Cluster) -> set[str]:
    """The emulator's resources (``group/version/plural``) that the registry's handlers will watch.

    A handler selecting nothing the emulator serves would make kopf only log a warning and the test time
    out later; it is an error here, naming the selector.
    """
    candidates = {str(spec.resource): _kopf_resource(spec) for spec in cluster.emulator.specs()}
    found: set[str] = set()
    unserved: set[str] = set()
    for part in _RESOURCE_PARTS:
        for handler in getattr(registry, part).get_all_handlers():
            if handler.selector is None:
                continue
            matches = {path for path, candidate in candidates.items() if handler.selector.check(candidate)}
            found |= matches
            if not matches:
                unserved.add(repr(handler.selector))
    if unserved:
        raise LookupError(
            f"the emulator serves no resource for {', '.join(sorted(unserved))}: "
            "register it with cluster.emulator.register(ResourceSpec(...)) before starting the operator"
        )
    return found


def _kopf_resource(spec: ResourceSpec) -> kopf.Resource:
    res = spec.resource
    return kopf.Resource(
        res.group,
        res.version,
        res.plural,
        kind=spec.kind,
        singular=spec.kind.lower(),
        shortcuts=frozenset(spec.shortnames),
        namespaced=spec.namespaced,
        subresources=frozenset({"status"} if spec.status else ()),
    )


@dataclass
class RunningOperator:
    """A started operator; ``await stop()`` ends it (the ``operator`` fixture stops leftovers)."""

    module: str
    runner: KopfRunner
    registry: kopf.OperatorRegistry
    watched: set[str] = field(default_factory=set)
    stopped: bool = False

    async def stop(self) -> None:
        """Stop the operator and re-raise what it crashed with, if anything."""
        if self.stopped:
            return
        self.stopped = True
        try:
            await asyncio.to_thread(self.runner.__exit__, None, None, None)
        finally:
            _process_registry()

    @property
    def output(self) -> str:
        """kopf's log output (available once stopped)."""
        return self.runner.output


class OperatorFactory(Protocol):
    """The ``operator`` fixture: ``await operator("pkg.module")`` starts kopf against the ``cluster``."""

    async def __call__(
        self,
        module: str,
        *,
        namespaces: Sequence[str] = (),
        include: Sequence[str] = (),
        args: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> RunningOperator: ...


async def start_operator(
    cluster: Cluster,
    module: str,
    *,
    namespaces: Sequence[str] = (),
    include: Sequence[str] = (),
    args: Sequence[str] = (),
    timeout: float = 10.0,
) -> RunningOperator:
    """Start ``kopf run --standalone -m MODULE`` (``-A`` unless ``namespaces``) and wait for its watches.

    Returns once the emulator has seen a new watch request for every registered resource the module's
    handlers select, so objects created afterwards are observed as events (earlier ones are listed).
    """
    registry = registry_for(module, include)
    watched = watched_resources(registry, cluster)
    before = {path: cluster.emulator.watch_starts[path] for path in watched}
    scope = [arg for ns in namespaces for arg in ("-n", ns)] or ["-A"]
    runner = KopfRunner(
        ["run", "--standalone", *scope, *args, "-m", module], registry=registry, timeout=timeout
    )
    runner.__enter__()
    running = RunningOperator(module=module, runner=runner, registry=registry, watched=watched)

    def watching() -> bool:
        return runner.future.done() or all(cluster.emulator.watch_starts[p] > before[p] for p in watched)

    try:
        await wait_for(watching, timeout, message=f"operator {module} watching {sorted(watched)}")
    except BaseException:
        await running.stop()
        raise
    if runner.future.done():
        await running.stop()  # re-raises what the operator crashed with
        raise RuntimeError(f"operator {module} exited right after starting:\n{running.output}")
    return running
