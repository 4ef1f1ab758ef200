"""An in-memory Kubernetes API server for integration tests: kmock's emulator with the semantics kopf needs.

kmock 0.8 stores objects verbatim: no uid, no resourceVersion, watches that replay everything, a failed
JSON-patch ``test`` answered with 500. kopf relies on all of these (optimistic concurrency on finalizers,
``kopf.adopt`` owner uids, watch continuation from a list's resourceVersion), so this subclass replaces the
emulator's request handling while keeping kmock's server, discovery and its ``objects`` store. It relies on
kmock internals (``RawHandler._handle``, ``Object`` histories): kmock is pinned to 0.8 in pyproject.

What it emulates, per request:

- create: uid, increasing resourceVersion (one counter for all objects, like etcd), creationTimestamp,
  generation 1, apiVersion/kind/namespace from the URL, ``generateName``; 409 AlreadyExists; status is
  reset on create for resources with a status subresource (pods start ``Pending``), as the server does.
- patch (merge; strategic is treated as merge; JSON patch) and PUT: a failed JSON-patch ``test`` op or a
  bad path is 422; a stale ``metadata.resourceVersion`` in the body is 409; writes through ``/status``
  change only the status and leave ``generation`` alone; writes to the main resource ignore status when
  the resource has a status subresource, and bump ``generation`` when anything but metadata/status
  changed; a no-op write changes nothing (no new resourceVersion, no watch event); finalizers cannot be
  added once deletion started; removing the last finalizer of a deleted object removes it. Server-side
  apply answers 415 rather than pretending.
- delete: finalizers keep the object, with ``deletionTimestamp``; ``propagationPolicy`` Foreground/Orphan
  add the ``foregroundDeletion``/``orphan`` finalizers, and a batch/v1 Job deleted without a policy is
  orphaned, as on a real server. Nothing collects garbage by itself: see ``kubelet.collect_garbage``.
- list/watch: namespace, label and field selectors; ``resourceVersion`` on watches (events after it; 410
  Gone when it is older than the retained event log); ``sendInitialEvents`` with its closing bookmark;
  ``timeoutSeconds``. Watch events are filtered on the object as it is in the event (a real server also
  turns "no longer matches" into DELETED).

- ``pods/log``: what the fake kubelet wrote as the container's output (``write_log``); ``follow=true``
  streams it until the container has terminated or the pod is deleted; 400 while the pod is Pending and
  404 for a pod that does not exist, as the kubelet's log endpoint answers.

Not emulated: schema validation/pruning/defaulting, admission, quotas, deletecollection, the ``scale`` and
``binding`` subresources, namespace existence and namespace deletion cascades.

Speed: kmock matches each request against its whole request log. While no test-defined kmock reaction
exists, the log is trimmed to ``request_log_size`` and requests go straight to the ``_serve_*`` methods
(~0.5 ms per PATCH instead of growing by ~0.2 ms per logged request); once a test adds a reaction (e.g.
``emulator["post", kmock.resource("batch/v1/jobs")][:1] << 503``), kmock's normal matching and full log
apply from then on. ``request_counts`` and ``journal`` record every request either way.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import datetime
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import apps, dicts, enums, rendering

from tests.support.api import KubeApi, Resource
from tests.support.selectors import SelectorError, field_selector, label_selector

VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of the API server's generateName suffixes
_MAX_GENERATE_BASE = 58


@dataclass(frozen=True)
class ResourceSpec:
    """One served resource: what discovery reports and what create/delete special-case."""

    path: str  # "group/version/plural", or "v1/plural" for the core group
    kind: str
    namespaced: bool = True
    status: bool = False  # has the status subresource
    initial_status: Mapping[str, Any] = field(default_factory=dict)  # the status the server sets on create
    orphan_by_default: bool = False  # a delete without propagationPolicy orphans dependents
    shortnames: tuple[str, ...] = ()

    @property
    def resource(self) -> Resource:
        return Resource.parse(self.path)


CORE_RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(
        "v1/namespaces", "Namespace", namespaced=False, status=True, initial_status={"phase": "Active"}
    ),
    ResourceSpec("v1/pods", "Pod", status=True, initial_status={"phase": "Pending"}),
    ResourceSpec("v1/events", "Event"),
    ResourceSpec("v1/configmaps", "ConfigMap"),
    ResourceSpec("v1/secrets", "Secret"),
    ResourceSpec("v1/services", "Service", status=True),
    ResourceSpec("v1/serviceaccounts", "ServiceAccount"),
    ResourceSpec("batch/v1/jobs", "Job", status=True, orphan_by_default=True),
    ResourceSpec("apps/v1/deployments", "Deployment", status=True),
    ResourceSpec("rbac.authorization.k8s.io/v1/roles", "Role"),
    ResourceSpec("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding"),
    ResourceSpec("events.k8s.io/v1/events", "Event"),
    ResourceSpec("coordination.k8s.io/v1/leases", "Lease"),
    ResourceSpec(
        "apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", namespaced=False
    ),
)


def crd_resources(crds: Iterable[Mapping[str, Any]]) -> tuple[ResourceSpec, ...]:
    """Resource specs for every served version of the given CRD manifests."""
    specs = []
    for crd in crds:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if version.get("served", True):
                specs.append(
                    ResourceSpec(
                        f"{spec['group']}/{version['name']}/{names['plural']}",
                        names["kind"],
                        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                        status="status" in (version.get("subresources") or {}),
                        shortnames=tuple(names.get("shortNames", ())),
                    )
                )
    return tuple(specs)


def orchest_crds() -> list[dict[str, Any]]:
    """orchest's own CRDs, generated from the models: the emulator serves exactly what we install."""
    from orchest_operator.crds import all_crds

    return list(all_crds().values())


def _clone(value: Any) -> Any:
    """A deep copy of a JSON tree (what every stored object is): about 2.7 times as fast as
    ``copy.deepcopy``, which took a third of the emulator's time per Job create (one copy of the request,
    one of the response) and so bounded how fast the benchmarks' clients could create Jobs."""
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    # Non-empty details: kmock would otherwise put a server-side traceback there.
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={"causes": []})


@dataclass
class PodLog:
    """A container's output as the kubelet would keep it: text so far, and whether it has terminated."""

    text: str = ""
    finished: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersions, uids, generations, finalizers and resumable watches.

    Register resources with ``register(spec)`` (or ``register_crd(manifest)``) before serving. Objects
    stay in kmock's ``objects`` store, so kmock-style assertions keep working; ``peek``/``peek_all`` read
    the current state without an API call (safe inside the test's event loop).
    """

    request_log_size: int | None = 1  # kmock's log is trimmed to this while no user reaction exists
    event_log_size: int = 1000  # watch events kept per resource to resume from (plus what open watches lag)
    history_size: int = 8  # versions kept per object in kmock's history
    watch_heartbeat: float = 0.25  # how often an idle watch checks whether its client went away

    _specs: dict[kmock.resource, ResourceSpec] = attrs.field(factory=dict, init=False)
    _builtin: list[Any] = attrs.field(factory=list, init=False)
    _direct: dict[enums.action, Any] = attrs.field(factory=dict, init=False)
    _replacing: Any = attrs.field(default=None, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _events: dict[kmock.resource, list[tuple[int, dict[str, Any]]]] = attrs.field(
        factory=lambda: collections.defaultdict(list), init=False
    )
    _horizon: dict[kmock.resource, int] = attrs.field(
        factory=lambda: collections.defaultdict(int), init=False
    )
    _signals: dict[kmock.resource, asyncio.Event] = attrs.field(factory=dict, init=False)
    _cursors: dict[kmock.resource, dict[int, int]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False
    )  # per open watch: the last resourceVersion it has taken from the event log
    watch_starts: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    active_watches: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    request_counts: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    journal: collections.deque[tuple[float, str]] = attrs.field(
        factory=lambda: collections.deque(maxlen=2000), init=False
    )  # (loop time, request) of the latest requests: to debug timing without kmock's full log
    pod_logs: dict[tuple[str, str], PodLog] = attrs.field(factory=dict, init=False)
    by_token: dict[str, collections.Counter[str]] = attrs.field(
        factory=lambda: collections.defaultdict(collections.Counter), init=False
    )  # bearer token → request counts: tells apart clients given kubeconfigs with their own tokens

    # --- registration and direct access -------------------------------------------------------------

    def register(self, spec: ResourceSpec) -> None:
        res = kmock.resource(spec.path)
        self._specs[res] = spec
        self.resources[res] = kmock.ResourceInfo(
            kind=spec.kind,
            namespaced=spec.namespaced,
            singular=spec.kind.lower(),
            verbs=set(VERBS),
            shortnames=set(spec.shortnames),
            subresources={"status"} if spec.status else set(),
        )

    def unregister(self, resource: str | Resource) -> None:
        """Stop serving a resource (discovery included), e.g. to test a cluster without a CRD."""
        res = self._registered(resource)
        del self._specs[res]
        del self.resources[res]

    def register_crd(self, crd: Mapping[str, Any], *, store: bool = True) -> None:
        """Serve a CRD's resources and (by default) store the CRD object, as an installed cluster has it."""
        for spec in crd_resources([crd]):
            self.register(spec)
        res = kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions")
        if store and res in self._specs:
            self._store_new(res, None, crd["metadata"]["name"], _clone(dict(crd)))

    def write_log(self, namespace: str, pod: str, text: str, *, finished: bool = False) -> None:
        """Append ``text`` to a pod's container output (what ``pods/log`` serves); ``finished`` marks the
        container terminated, which ends followed streams."""
        log = self.pod_logs.setdefault((namespace, pod), PodLog())
        log.text += text
        log.finished = log.finished or finished
        log.changed.set()
        log.changed = asyncio.Event()

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion handed out (all resources share one counter)."""
        return self._rv

    def specs(self) -> list[ResourceSpec]:
        return list(self._specs.values())

    def spec_of(self, resource: str | Resource) -> ResourceSpec:
        return self._specs[self._registered(resource)]

    def _registered(self, resource: str | Resource) -> kmock.resource:
        """The kmock key of a registered resource; a typo fails loudly instead of peeking at nothing."""
        res = kmock.resource(str(Resource.parse(resource)))
        if res not in self._specs:
            raise KeyError(f"resource {resource!s} is not registered in the emulator")
        return res

    def peek(
        self, resource: str | Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The stored object (a copy) or None; no HTTP, so it is safe to call from the test's loop."""
        res = self._registered(resource)
        obj = self._live(res, namespace, name)
        return _clone(obj.raw) if obj is not None else None

    def peek_all(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        labels: str | Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored objects of a resource (copies), optionally in one namespace and matching labels."""
        res = self._registered(resource)
        selector = (
            labels
            if isinstance(labels, str) or labels is None
            else ",".join(f"{k}={v}" for k, v in labels.items())
        )
        check = label_selector(selector)
        return [_clone(o) for o in self._select(res, namespace, None) if check(o)]

    # --- kmock plumbing -----------------------------------------------------------------------------

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._replacing = self.fallback[enums.method.PUT] << self._serve_replace
        self._builtin = list(self._payloads)
        serving = {
            enums.action.LIST: self._serve_list,
            enums.action.WATCH: self._serve_watch,
            enums.action.FETCH: self._serve_fetch,
            enums.action.CREATE: self._serve_create,
            enums.action.UPDATE: self._serve_update,
            enums.action.DELETE: self._serve_delete,
        }
        self._direct = {
            action: payload
            for payload in self._payloads
            for action, method in serving.items()
            if payload.response.payload == method
        }

    async def _handle(self, request: rendering.Request) -> Any:
        # KubernetesEmulator._handle is skipped: its state changes are replaced by the _serve_* methods,
        # which run only when no user-defined kmock reaction intercepts the request. kmock matches every
        # request against its whole request log (a PATCH costs ~0.2 ms more per logged request): while no
        # user reaction exists, the log is trimmed and K8s requests go straight to their _serve_* method.
        described = _describe(request)
        self.request_counts[described] += 1
        auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        self.by_token[auth.removeprefix("Bearer ")][described] += 1
        self.journal.append((asyncio.get_running_loop().time(), f"{described} {request.name or ''}".rstrip()))
        untouched = len(self._payloads) == len(self._builtin) and all(
            mine is builtin for mine, builtin in zip(self._payloads, self._builtin, strict=True)
        )
        if untouched and self.request_log_size is not None:
            del self._requests[: -self.request_log_size]
            for payload in self._payloads:
                del payload._requests[: -self.request_log_size]
        if untouched and request.action in self._direct and request.resource in self._specs:
            return await self._direct[request.action](request)
        if untouched and request.method == enums.method.PUT and request.resource in self._specs:
            return await self._replacing(request)
        return await apps.RawHandler._handle(self, request)

    def _spec(self, request: rendering.Request) -> tuple[kmock.resource, ResourceSpec]:
        res = request.resource
        if res is None or res not in self._specs:
            raise kmock.KubernetesResourceNotFoundError()
        return res, self._specs[res]

    def _live(self, res: kmock.resource, namespace: str | None, name: str) -> Any:
        key = (res, namespace, name)
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj

    def _select(self, res: kmock.resource, namespace: str | None, name: str | None) -> list[dict[str, Any]]:
        found = [
            obj.raw
            for (r, ns, n), obj in self._objects.items()
            if r == res
            and not obj.deleted
            and (namespace is None or ns == namespace)
            and (name is None or n == name)
        ]
        return sorted(found, key=_key)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _publish(self, res: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        log = self._events[res]
        log.append((rv, {"type": kind, "object": obj}))
        if len(log) > 2 * self.event_log_size:
            dropped = len(log) - self.event_log_size
            open_watches = self._cursors[res].values()
            if open_watches:  # never drop what an open watch has not taken yet
                dropped = min(dropped, bisect.bisect_right(log, min(open_watches), key=lambda item: item[0]))
            if dropped > 0:
                self._horizon[res] = log[dropped - 1][0]
                del log[:dropped]
        signal = self._signals.pop(res, None)
        if signal is not None:
            signal.set()

    def _store_new(
        self, res: kmock.resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        spec = self._specs[res]
        meta = dict(body.get("metadata") or {})
        meta.update(
            name=name,
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_rv(),
            creationTimestamp=_now(),
            generation=1,
        )
        for transient in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(transient, None)
        if namespace is not None:
            meta["namespace"] = namespace
        body["metadata"] = meta
        body["apiVersion"] = spec.resource.api_version
        body["kind"] = spec.kind
        if spec.status:
            body["status"] = _clone(dict(spec.initial_status))
        key = (res, namespace, name)
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        self._publish(res, "ADDED", body)
        return body

    def _store_version(
        self, res: kmock.resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> None:
        obj = self._objects[(res, namespace, name)]
        obj.history.append(body)
        if len(obj.history) > self.history_size:
            del obj.history[: -self.history_size]

    # --- the API ------------------------------------------------------------------------------------

    async def _serve_create(self, request: rendering.Request) -> rendering.Response:
        res, spec = self._spec(request)
        if not isinstance(request.data, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        body = _clone(request.data)
        meta = body.get("metadata") or {}
        namespace = (request.namespace or meta.get("namespace")) if spec.namespaced else None
        if spec.namespaced and not namespace:
            raise _error(400, "BadRequest", f"{spec.kind} is namespaced: metadata.namespace is required")
        if request.namespace and meta.get("namespace") and meta["namespace"] != request.namespace:
            raise _error(
                400, "BadRequest", "the namespace of the object does not match the namespace of the URL"
            )
        name = meta.get("name")
        if not name:
            if not meta.get("generateName"):
                raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
            base = meta["generateName"][:_MAX_GENERATE_BASE]
            name = base + "".join(random.choices(_NAME_CHARS, k=5))
        if self._live(res, namespace, name) is not None:
            raise _error(409, "AlreadyExists", f'{spec.resource.plural} "{name}" already exists')
        stored = self._store_new(res, namespace, name, body)
        return rendering.Response(status=201, payload=_clone(stored))

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        res, spec = self._spec(request)
        obj = self._live(res, request.namespace, request.name or "")
        if request.subresource == "log" and spec.kind == "Pod" and obj is not None:
            return self._serve_log(res, request, obj.raw)
        if obj is None or request.subresource not in (None, "status"):
            raise _error(404, "NotFound", f'{spec.resource.plural} "{request.name}" not found')
        return obj.raw

    def _serve_log(self, res: kmock.resource, request: rendering.Request, pod: dict[str, Any]) -> Any:
        namespace, name = request.namespace or "", request.name or ""
        waiting = (pod.get("status") or {}).get("phase") in (None, "Pending")
        if waiting and (namespace, name) not in self.pod_logs:
            message = f'container in pod "{name}" is waiting to start: ContainerCreating'
            raise _error(400, "BadRequest", message)
        log = self.pod_logs.setdefault((namespace, name), PodLog())
        headers = {"Content-Type": "text/plain"}
        if request.params.get("follow") != "true":
            return rendering.Response(status=200, payload=log.text.encode(), headers=headers)

        async def follow() -> AsyncIterator[bytes]:
            yield log.text.encode()
            sent = len(log.text)
            while not log.finished and self._live(res, namespace, name) is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(log.changed.wait(), self.watch_heartbeat)
                transport = request._raw_request.transport if request._raw_request is not None else None
                if transport is None or transport.is_closing():
                    return
                if len(log.text) > sent:
                    yield log.text[sent:].encode()
                    sent = len(log.text)

        return rendering.Response(status=200, payload=follow(), headers=headers)

    async def _serve_list(self, request: rendering.Request) -> dict[str, Any]:
        res, spec = self._spec(request)
        check = self._filter(request)
        items = [obj for obj in self._select(res, request.namespace, None) if check(obj)]
        return {
            "apiVersion": spec.resource.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self._rv), "continue": ""},
            "items": items,
        }

    def _filter(self, request: rendering.Request) -> Any:
        try:
            labels = label_selector(request.params.get("labelSelector"))
            fields = field_selector(request.params.get("fieldSelector"))
        except SelectorError as error:
            raise _error(400, "BadRequest", str(error)) from error
        return lambda obj: labels(obj) and fields(obj)

    async def _serve_update(self, request: rendering.Request) -> dict[str, Any]:
        res, spec, obj = self._target(request)
        if "apply-patch" in request.headers.get("Content-Type", ""):
            raise _error(415, "UnsupportedMediaType", "server-side apply is not emulated; use a merge patch")
        return self._write(request, res, spec, obj, self._apply_patch(obj.raw, request.data))

    async def _serve_replace(self, request: rendering.Request) -> dict[str, Any]:
        res, spec, obj = self._target(request)
        body = request.data
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        stated_rv = (body.get("metadata") or {}).get("resourceVersion")
        if stated_rv is not None and str(stated_rv) != obj.raw["metadata"]["resourceVersion"]:
            raise _error(
                409, "Conflict", "the object has been modified; apply your changes to the latest version"
            )
        return self._write(request, res, spec, obj, _clone(body))

    def _target(self, request: rendering.Request) -> tuple[kmock.resource, ResourceSpec, Any]:
        res, spec = self._spec(request)
        obj = self._live(res, request.namespace, request.name or "")
        if obj is None:
            raise _error(404, "NotFound", f'{spec.resource.plural} "{request.name}" not found')
        if request.subresource not in (None, "status") or (request.subresource and not spec.status):
            raise _error(404, "NotFound", f"{spec.resource.plural}/{request.subresource} is not served")
        return res, spec, obj

    def _write(
        self,
        request: rendering.Request,
        res: kmock.resource,
        spec: ResourceSpec,
        obj: Any,
        patched: dict[str, Any],
    ) -> dict[str, Any]:
        """Store a patched or replaced object as the API server would (see the module docstring)."""
        namespace, name = request.namespace, request.name or ""
        old = obj.raw
        new = self._merge_subresource(spec, request.subresource, old, patched)
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event, as on a real server
        new_meta = new["metadata"]
        old_meta = old["metadata"]
        added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if old_meta.get("deletionTimestamp") and added:
            raise _error(422, "Invalid", "no new finalizers can be added if the object is being deleted")
        if request.subresource is None and _content(new) != _content(old):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        new_meta["resourceVersion"] = self._next_rv()
        self._store_version(res, namespace, name, new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._objects[(res, namespace, name)].delete()
            self._publish(res, "DELETED", new)
        else:
            self._publish(res, "MODIFIED", new)
        return _clone(new)

    def _apply_patch(self, old: dict[str, Any], patch: Any) -> dict[str, Any]:
        if isinstance(patch, list):
            try:
                return jsonpatch.apply_patch(old, patch, in_place=False)
            except jsonpatch.JsonPatchTestFailed as error:
                raise _error(422, "Invalid", f"the JSON patch test failed: {error}") from error
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {error}") from error
        if isinstance(patch, dict):
            stated_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if stated_rv is not None and str(stated_rv) != old["metadata"]["resourceVersion"]:
                raise _error(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version",
                )
            try:
                return dict(dicts.merge_patch_dict(old, patch))
            except ValueError as error:
                raise _error(422, "Invalid", f"the merge patch cannot be applied: {error}") from error
        raise _error(400, "BadRequest", "a patch must be a JSON object or a JSON-patch list")

    @staticmethod
    def _merge_subresource(
        spec: ResourceSpec, subresource: str | None, old: dict[str, Any], patched: dict[str, Any]
    ) -> dict[str, Any]:
        """Keep only what the endpoint may change, and the metadata fields nobody may change."""
        if subresource == "status":
            new = {**old, "status": patched.get("status")}
            if new["status"] is None:
                del new["status"]
        else:
            new = dict(patched)
            if spec.status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
        meta = dict(new.get("metadata") or {})
        for fixed in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            meta.pop(fixed, None)
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
        new["metadata"] = meta
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        return new

    async def _serve_delete(self, request: rendering.Request) -> dict[str, Any]:
        res, spec = self._spec(request)
        namespace, name = request.namespace, request.name or ""
        obj = self._live(res, namespace, name)
        if obj is None:
            raise _error(404, "NotFound", f'{spec.resource.plural} "{name}" not found')
        old = obj.raw
        meta = dict(old["metadata"])
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        for field_name in ("uid", "resourceVersion"):
            if preconditions.get(field_name) and preconditions[field_name] != meta.get(field_name):
                raise _error(409, "Conflict", f"precondition failed: {field_name} does not match")
        if meta.get("deletionTimestamp"):
            return old
        policy = options.get("propagationPolicy") or request.params.get("propagationPolicy")
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground":
            finalizers.append("foregroundDeletion")
        elif (
            policy == "Orphan"
            or options.get("orphanDependents")
            or (policy is None and spec.orphan_by_default)
        ):
            finalizers.append("orphan")
        if finalizers:
            meta.update(
                finalizers=finalizers,
                deletionTimestamp=_now(),
                deletionGracePeriodSeconds=0,
                resourceVersion=self._next_rv(),
            )
            new = {**old, "metadata": meta}
            self._store_version(res, namespace, name, new)
            self._publish(res, "MODIFIED", new)
            return _clone(new)
        meta["resourceVersion"] = self._next_rv()
        final = {**old, "metadata": meta}
        self._store_version(res, namespace, name, final)
        obj.delete()
        self._publish(res, "DELETED", final)
        return _clone(final)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        res, spec = self._spec(request)
        check = self._filter(request)
        namespace, name = request.namespace, request.name
        params = request.params
        loop = asyncio.get_running_loop()
        timeout = params.get("timeoutSeconds")
        deadline = loop.time() + float(timeout) if timeout else None
        yield b""  # send the headers now: clients wait for them before they start reading events

        watch_key = str(spec.resource)
        self.watch_starts[watch_key] += 1
        self.active_watches[watch_key] += 1
        try:
            since = params.get("resourceVersion")
            if not since or since == "0" or params.get("sendInitialEvents") == "true":
                cursor = self._rv
                self._cursors[res][id(request)] = cursor
                for obj in self._select(res, namespace, name):
                    if check(obj):
                        yield {"type": "ADDED", "object": obj}
                if params.get("sendInitialEvents") == "true":
                    yield _bookmark(spec, cursor)
            else:
                try:
                    cursor = int(since)
                except ValueError:
                    yield _status_event(400, "BadRequest", f"invalid resourceVersion {since!r}")
                    return
            while True:
                self._cursors[res][id(request)] = cursor
                if cursor < self._horizon[res]:
                    yield _status_event(410, "Expired", f"too old resource version: {cursor}")
                    return
                log = self._events[res]
                start = bisect.bisect_right(log, cursor, key=lambda item: item[0])
                if start < len(log):
                    batch = log[start:]
                    cursor = batch[-1][0]
                    for _, event in batch:
                        obj = event["object"]
                        meta = obj["metadata"]
                        if (
                            (namespace is None or meta.get("namespace") == namespace)
                            and (name is None or meta.get("name") == name)
                            and check(obj)
                        ):
                            yield event
                    continue
                transport = request._raw_request.transport if request._raw_request is not None else None
                if transport is None or transport.is_closing():
                    return
                wait = self.watch_heartbeat
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        return
                signal = self._signals.get(res) or self._signals.setdefault(res, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), wait)
        finally:
            self.active_watches[watch_key] -= 1
            self._cursors[res].pop(id(request), None)


def _describe(request: rendering.Request) -> str:
    """A request-count key such as ``CREATE batch/v1/jobs`` or ``UPDATE v1/pods/status``."""
    res = request.resource
    if request.action is None or res is None or not res.plural:
        return f"{request.method.value} {request.url.path}"
    what = f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"
    return f"{request.action.value} {what}" + (f"/{request.subresource}" if request.subresource else "")


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _bookmark(spec: ResourceSpec, rv: int) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": spec.resource.api_version,
            "kind": spec.kind,
            "metadata": {"resourceVersion": str(rv), "annotations": {"k8s.io/initial-events-end": "true"}},
        },
    }


def _status_event(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        },
    }


def write_kubeconfig(path: Path, server: str, token: str = "emulator-token") -> Path:
    """A kubeconfig whose one context points at ``server`` (no TLS; a dummy token for clients wanting one,
    or a token of the test's choosing, to tell clients apart in ``ClusterEmulator.by_token``)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Cluster:
    """A running emulator with an API client and a kubeconfig that points at it."""

    emulator: ClusterEmulator
    api: KubeApi
    url: str
    kubeconfig: Path

    def peek(
        self, resource: str | Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        return self.emulator.peek(resource, name, namespace)

    def peek_all(
        self,
        resource: str | Resource,
        namespace: str | None = None,
        *,
        labels: str | Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        return self.emulator.peek_all(resource, namespace, labels=labels)


@contextlib.asynccontextmanager
async def running_cluster(
    kubeconfig: Path,
    resources: Iterable[ResourceSpec] | None = None,
    crds: Iterable[Mapping[str, Any]] | None = None,
) -> AsyncIterator[Cluster]:
    """Serve an emulator on a loopback port for the duration of the block.

    ``resources`` defaults to ``CORE_RESOURCES``; ``crds`` (default: orchest's) are served and stored.
    Add more with ``resources=(*CORE_RESOURCES, ResourceSpec(...))``, or register them on a running
    emulator with ``cluster.emulator.register(...)`` before the operator starts (kopf discovers once).
    """
    emulator = ClusterEmulator()
    for spec in CORE_RESOURCES if resources is None else resources:
        emulator.register(spec)
    for crd in orchest_crds() if crds is None else crds:
        emulator.register_crd(crd)
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        write_kubeconfig(kubeconfig, url)
        async with KubeApi.for_url(url) as api:
            yield Cluster(emulator=emulator, api=api, url=url, kubeconfig=kubeconfig)
