"""Runs leader election: waits for the Lease, then keeps renewing it in a thread of its own.

The renewing thread does not share the operator's event loop: a loop busy for seconds with a large
fan-out must not make the holder miss its renewals. When leadership is lost, ``on_lost`` is called from
that thread; ``orchest operator`` exits there and then, as kube-controller-manager does, because a replica
that may no longer lead must not take one more step (the kubelet restarts it, as a standby).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from orchest_operator.leader.election import (
    Action,
    Decision,
    Observation,
    Timings,
    claimed,
    deadline_passed,
    decide,
    observe,
    released,
)
from orchest_operator.leader.lease import LeaseClient, LeaseError

logger = logging.getLogger(__name__)

# What a failed attempt raises: the API server unreachable or slow, an error status, a lost race.
FAILURES = (requests.RequestException, LeaseError, ValueError)
# Seconds a request is given at least, even with less left before the renew deadline: the deadline check
# that follows it decides, and a request with no time at all could never succeed.
SHORTEST_REQUEST = 0.5


class Elector:
    """One replica's side of the election: its identity, what it last saw of the Lease, whether it leads.

    ``clock`` (monotonic) times expiry and deadlines; ``wall`` only stamps the record, for people reading it.
    """

    def __init__(
        self,
        leases: LeaseClient,
        identity: str,
        timings: Timings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.timings = timings
        self.clock = clock
        self.wall = wall
        self.leading = False
        self._observation: Observation | None = None
        self._last_renewed = 0.0

    def _timeout(self) -> float:
        if not self.leading:
            return self.timings.renew_deadline
        left = self.timings.renew_deadline - (self.clock() - self._last_renewed)
        return max(left, SHORTEST_REQUEST)

    def attempt(self) -> Decision:
        """One look at the Lease and the write it calls for. Raises one of ``FAILURES`` if either failed."""
        now = self.clock()
        record = self.leases.get(self._timeout())
        self._observation = observe(self._observation, record, now)
        decision = decide(self._observation, now, self.identity, self.timings, leading=self.leading)
        if decision.action in (Action.CREATE, Action.ACQUIRE, Action.RENEW):
            mine = claimed(record, self.identity, self.wall(), self.timings)
            if decision.action is Action.CREATE:
                written = self.leases.create(mine, self._timeout())
            else:
                written = self.leases.update(mine, self._timeout())
            self._observation = Observation(written, now)
            self._last_renewed = now
            if not self.leading:
                logger.info("became the leader (Lease %s/%s)", self.leases.namespace, self.leases.name)
            self.leading = True
        return decision

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until this replica holds the Lease (True), or ``stop`` is set (False)."""
        logger.info(
            "waiting to lead: Lease %s/%s, identity %s",
            self.leases.namespace,
            self.leases.name,
            self.identity,
        )
        while not stop.is_set():
            wait = self.timings.retry_period
            try:
                decision = self.attempt()
            except FAILURES as err:
                logger.warning("could not take the Lease (will retry): %s", err)
            else:
                if self.leading:
                    return True
                wait = decision.wait or wait
            stop.wait(wait)
        return False

    def hold(self, stop: threading.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period until ``stop``; call ``on_lost`` once if leadership is lost.

        Whatever goes wrong in here ends in ``on_lost``: a renewal thread that died quietly would leave a
        replica acting without a Lease."""
        try:
            self._hold(stop, on_lost)
        except Exception as err:
            logger.exception("the Lease renewal failed")
            self.leading = False
            on_lost(f"the Lease renewal failed: {err!r}")

    def _hold(self, stop: threading.Event, on_lost: Callable[[str], None]) -> None:
        while not stop.wait(self.timings.retry_period):
            try:
                decision = self.attempt()
            except FAILURES as err:
                logger.warning("could not renew the Lease: %s", err)
            else:
                if decision.action is Action.LOST:
                    holder = self._observation.record.holder if self._observation else ""
                    self.leading = False
                    on_lost(f"the Lease is now held by {holder!r}" if holder else "the Lease is gone")
                    return
            if self.leading and deadline_passed(self._last_renewed, self.clock(), self.timings):
                self.leading = False
                on_lost(f"could not renew the Lease for {self.timings.renew_deadline:g} s")
                return

    def start_holding(self, on_lost: Callable[[str], None]) -> Callable[[], None]:
        """``hold`` in a daemon thread; returns the function that stops it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.hold, args=(stop, on_lost), name="lease-renewal", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt

    def release(self) -> None:
        """On a clean shutdown, after the operator has stopped acting: hand the Lease over at once."""
        if not self.leading:
            return
        self.leading = False
        try:
            record = self.leases.get(self.timings.renew_deadline)
            if record is not None and record.holder == self.identity:
                self.leases.update(released(record, self.wall()), self.timings.renew_deadline)
                logger.info("released the Lease %s/%s", self.leases.namespace, self.leases.name)
        except FAILURES as err:  # the others take over when it expires instead
            logger.warning("could not release the Lease: %s", err)
