"""Deterministic names and label keys of the objects the operator creates.

A name derived from its parents lets a restarted operator find what it created before (and turns a second
create into a harmless 409), so no name here is random.
"""

from __future__ import annotations

import hashlib
import re

from orchest_operator.models import GROUP

LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_RUN = f"{GROUP}/pipeline-run"
LABEL_STEP = f"{GROUP}/step"
LABEL_COMPONENT = f"{GROUP}/component"
ANNOTATION_RUN = f"{GROUP}/pipeline-run"
"""The run's full name: label values stop at 63 characters, run names do not."""
LABEL_JOB = f"{GROUP}/pipeline-job"
"""On every PipelineRun a PipelineJob creates: the job's name."""
LABEL_BATCH = f"{GROUP}/batch"
"""On every PipelineRun a PipelineJob creates: its batch's id."""
ANNOTATION_COMBINATION = f"{GROUP}/combination"
ANNOTATION_MAX_PARALLEL = f"{GROUP}/max-parallel-runs"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "orchest-operator"

MAX_NAME = 63
_HASH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH]


def derived(*parts: str, limit: int = MAX_NAME, dns1035: bool = False) -> str:
    """Join ``parts`` with '-' into a valid DNS label of at most ``limit`` characters.

    When the plain join is too long (or had to be cleaned), it is cut and suffixed with a hash of the
    original parts, so two different parents never share a child name. ``dns1035`` (Services) also makes
    it start with a letter.
    """
    raw = "-".join(parts)
    clean = _INVALID.sub("-", raw.lower()).strip("-")
    if dns1035 and not clean[:1].isalpha():
        clean = "o-" + clean
    if clean == raw and len(clean) <= limit:
        return clean
    suffix = _digest(raw)
    head = clean[: limit - _HASH - 1].rstrip("-")
    return f"{head}-{suffix}" if head else suffix if not dns1035 else f"o{suffix}"


def job_name(run: str, step: str) -> str:
    """``<run>-<step>-<hash>``: always hashed, because run "a-b" with step "c" and run "a" with step
    "b-c" would otherwise share a Job, and one run would adopt the other's step."""
    head = _INVALID.sub("-", f"{run}-{step}".lower()).strip("-")[: MAX_NAME - _HASH - 1].rstrip("-")
    return f"{head}-{_digest(f'{run}/{step}')}"


def label_value(value: str) -> str:
    """Label values are limited to 63 characters too; long run names are hashed the same way."""
    return derived(value)
