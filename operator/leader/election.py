"""What a replica does next with the Lease, decided without I/O.

The rules are client-go's (what kube-controller-manager and kube-scheduler run), so a cluster operator
reads our Lease as theirs:

* A Lease is held while its holder renews it. Others judge expiry by *their own* clock, from the moment
  they saw the record last change, never from the ``renewTime`` written in it: nodes' clocks may
  disagree, a local monotonic clock cannot disagree with itself.
* The holder renews every retry period. Once ``renew_deadline`` has passed since its last successful
  renewal it gives up, which is earlier than anyone else may take over (``lease_duration``): for the
  difference (5 s by default) nobody acts, rather than two at once.
* A holder that finds the Lease gone or held by another has lost it. Nothing it did not see can be ruled
  out, so it stops acting at once.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class Timings:
    """client-go's defaults, which kube-controller-manager uses: 15 s lease, 10 s deadline, 2 s retry."""

    lease_duration: float = 15.0  # how long others wait, after the last change they saw, to take over
    renew_deadline: float = 10.0  # how long the holder keeps trying to renew before it stops acting
    retry_period: float = 2.0  # how often a standby looks, and the holder renews

    def __post_init__(self) -> None:
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("lease timings must be positive")
        if self.renew_deadline >= self.lease_duration:
            raise ValueError(
                f"the renew deadline ({self.renew_deadline:g} s) must be shorter than the lease duration "
                f"({self.lease_duration:g} s), or a replica could take over while the holder still acts"
            )
        if self.retry_period >= self.renew_deadline:
            raise ValueError(
                f"the retry period ({self.retry_period:g} s) must be shorter than the renew deadline "
                f"({self.renew_deadline:g} s), or the holder gets no second try before giving up"
            )


@dataclass(frozen=True)
class Record:
    """The part of a Lease that election reads and writes."""

    holder: str = ""
    duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0
    resource_version: str | None = None

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=spec.get("leaseDurationSeconds"),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=spec.get("leaseTransitions") or 0,
            resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
        )

    def spec(self) -> dict[str, Any]:
        fields = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Observation:
    """The record this replica saw last, and when by its monotonic clock it first saw it so."""

    record: Record
    seen_at: float


def observe(previous: Observation | None, record: Record | None, now: float) -> Observation | None:
    """A changed record restarts the expiry clock; the same record keeps the time it was first seen."""
    if record is None:
        return None
    if previous is not None and _same(previous.record, record):
        return previous
    return Observation(record, now)


def _same(a: Record, b: Record) -> bool:
    if a.resource_version and b.resource_version:
        return a.resource_version == b.resource_version
    return (a.holder, a.renew_time, a.transitions) == (b.holder, b.renew_time, b.transitions)


class Action(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, held by us
    ACQUIRE = "acquire"  # free or expired: write ourselves in as holder
    RENEW = "renew"  # ours: write a new renewTime
    WAIT = "wait"  # another replica holds it: look again after ``wait`` seconds
    LOST = "lost"  # we were leading and the Lease says otherwise: stop acting now


@dataclass(frozen=True)
class Decision:
    action: Action
    wait: float = 0.0


def decide(
    observation: Observation | None, now: float, identity: str, timings: Timings, *, leading: bool
) -> Decision:
    """The next step for ``identity``, given the Lease as last observed (None: there is none)."""
    if observation is None:
        return Decision(Action.LOST) if leading else Decision(Action.CREATE)
    record = observation.record
    if record.holder == identity:
        return Decision(Action.RENEW)
    if leading:
        return Decision(Action.LOST)
    if not record.holder:  # released by its last holder on a clean shutdown
        return Decision(Action.ACQUIRE)
    duration = record.duration_seconds or timings.lease_duration
    expires = observation.seen_at + duration
    if now >= expires:
        return Decision(Action.ACQUIRE)
    # Look again a retry period later, or right when it expires if that comes first: a dead holder's
    # Lease is taken within the lease duration of its last renewal seen, not a retry period after.
    return Decision(Action.WAIT, wait=min(timings.retry_period, expires - now))


def deadline_passed(last_renewed: float, now: float, timings: Timings) -> bool:
    """The holder could not renew for ``renew_deadline``: others may take over soon, so it stops."""
    return now - last_renewed >= timings.renew_deadline


def micro_time(when: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claimed(record: Record | None, identity: str, wall: datetime, timings: Timings) -> Record:
    """The record to write for ``identity`` taking or renewing the Lease at wall-clock time ``wall``."""
    stamp = micro_time(wall)
    duration = math.ceil(timings.lease_duration)
    if record is None:
        return Record(identity, duration, stamp, stamp, 0)
    if record.holder == identity:
        return replace(record, duration_seconds=duration, renew_time=stamp)
    return replace(
        record,
        holder=identity,
        duration_seconds=duration,
        acquire_time=stamp,
        renew_time=stamp,
        transitions=record.transitions + 1,
    )


def released(record: Record, wall: datetime) -> Record:
    """What a holder writes on a clean shutdown: no holder, so a standby takes over at its next look."""
    stamp = micro_time(wall)
    return replace(record, holder="", duration_seconds=1, renew_time=stamp)
