"""What the operator asks the API server to send it, and what kopf keeps of each event.

Most of the operator's work per step is kopf processing watch events (about a millisecond each), so the
cheapest event is the one the server never sends:

* Jobs and pods are watched with a server-side label selector: a busy cluster's other workloads cost the
  operator nothing (kopf's ``labels=`` on a handler filters in the client, after the event arrived).
* Pods are only watched once they have finished. The reconciler reads a pod for one thing, its end (a
  Succeeded pod is a done step; a Failed one carries the termination message); the Job says whether a
  step runs. A pod changes four to six times before it ends, so this is most of a step's events.
  A pod that never runs (unschedulable, image pull, refused) is therefore not seen here: a step whose
  Job shows no running pod for a few seconds is checked with two targeted lists instead (``stuck.py``),
  which costs nothing for the steps that run. Watching every pod instead about doubled the time from a
  step's pod ending to its dependent's Job (``bench/README.md``, "Stuck steps").
* kopf builds a "diff base" for every event of every resource: a deep copy of the whole body, status
  included (a 1000-step run's status is 200 KB), and keeps the one it handled in an annotation. Only
  change handlers and timers read it, and only Pipelines have those here (the interactive session's),
  so every other kind gets an empty one, and a Pipeline's holds only the spec fields the session is built
  from: a Pipeline's status changes with each of its runs, and a copy of 1000 steps per event cost a
  fan-out about 10 ms each time. It also keeps the steps out of the annotation, where a large pipeline
  would not fit (an object's annotations are limited to 256 KiB in all).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from orchest_operator import naming, session
from orchest_operator.models import API_VERSION, GROUP

JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")
DEPLOYMENTS = ("apps", "v1", "deployments")
FINISHED_PODS = "status.phase!=Pending,status.phase!=Running"
"""Pods in a final phase (or Unknown, a lost node), as a field selector: those accept only ``=`` and
``!=``, joined by "and"."""
TRACKED_SPEC: Mapping[tuple[str, str], tuple[str, ...]] = {(API_VERSION, "Pipeline"): session.SPEC_FIELDS}
"""The kinds that have kopf change handlers or timers, and the spec fields those handlers read."""


class TrackedSpecDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, holding only the tracked spec fields of the tracked kinds.

    An annotation written by an earlier version (the whole spec, labels and annotations) differs from the
    first essence built here: kopf then runs the session's update handler once, as any spec edit did,
    and stores the smaller essence."""

    def __init__(self, tracked: Mapping[tuple[str, str], tuple[str, ...]], *, prefix: str, key: str) -> None:
        super().__init__(prefix=prefix, key=key)
        self.tracked = dict(tracked)

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        fields = self.tracked.get((body.get("apiVersion"), body.get("kind")))
        if fields is None:
            return {}
        extra = list(extra_fields or ())
        if extra:  # a handler that reads more (none does today): kopf's whole essence, to be safe
            return super().build(body=body, extra_fields=extra)
        spec = body.get("spec") or {}
        return {"spec": copy.deepcopy({f: spec[f] for f in fields if f in spec})}


def configure(settings: kopf.OperatorSettings) -> None:
    """Apply the server-side filters and the diff base above to kopf's settings."""
    settings.persistence.diffbase_storage = TrackedSpecDiffBase(
        TRACKED_SPEC, prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.label_selectors[JOBS] = naming.LABEL_RUN
    settings.watching.label_selectors[PODS] = naming.LABEL_RUN
    settings.watching.field_selectors[PODS] = FINISHED_PODS
    settings.watching.label_selectors[DEPLOYMENTS] = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"
