"""Leader election's decisions (pure, table-driven) and the elector's loops against a fake Lease."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from orchest_operator.leader.election import (
    Action,
    Decision,
    Observation,
    Record,
    Timings,
    claimed,
    deadline_passed,
    decide,
    micro_time,
    observe,
    released,
)
from orchest_operator.leader.elector import Elector
from orchest_operator.leader.lease import Conflict, LeaseError

T = Timings()  # 15 s lease, 10 s renew deadline, 2 s retry
ME, OTHER = "pod-a_1", "pod-b_2"


def seen(holder: str, at: float, duration: int | None = 15) -> Observation:
    return Observation(Record(holder=holder, duration_seconds=duration, resource_version="7"), at)


@pytest.mark.parametrize(
    ("observation", "now", "leading", "expected"),
    [
        # nobody has created the Lease
        (None, 0.0, False, Decision(Action.CREATE)),
        # ours: renew, whether we knew we led or not (a restart never reuses an identity, but be exact)
        (seen(ME, 0.0), 1.0, True, Decision(Action.RENEW)),
        (seen(ME, 0.0), 1.0, False, Decision(Action.RENEW)),
        # held by another, renewed recently: look again a retry period later
        (seen(OTHER, 0.0), 1.0, False, Decision(Action.WAIT, 2.0)),
        # ... or exactly when it expires, if that is sooner
        (seen(OTHER, 0.0), 14.0, False, Decision(Action.WAIT, 1.0)),
        # unrenewed for its whole duration, as we observed it: take it
        (seen(OTHER, 0.0), 15.0, False, Decision(Action.ACQUIRE)),
        (seen(OTHER, 0.0), 40.0, False, Decision(Action.ACQUIRE)),
        # the holder's own duration counts, not ours
        (seen(OTHER, 0.0, duration=30), 20.0, False, Decision(Action.WAIT, 2.0)),
        (seen(OTHER, 0.0, duration=None), 15.0, False, Decision(Action.ACQUIRE)),
        # released on a clean shutdown: take it at once
        (seen("", 0.0), 0.0, False, Decision(Action.ACQUIRE)),
        # we led, and now it is another's, free, or gone: lost, whatever its age
        (seen(OTHER, 0.0), 0.5, True, Decision(Action.LOST)),
        (seen("", 0.0), 0.5, True, Decision(Action.LOST)),
        (None, 0.5, True, Decision(Action.LOST)),
    ],
)
def test_decide(observation: Observation | None, now: float, leading: bool, expected: Decision) -> None:
    assert decide(observation, now, ME, T, leading=leading) == expected


def test_expiry_counts_from_when_a_change_was_seen_not_from_the_written_renew_time() -> None:
    """A skewed clock on the holder's node cannot make a standby take over early."""
    skewed = Record(holder=OTHER, duration_seconds=15, renew_time="1999-01-01T00:00:00.000000Z")
    first = observe(None, replace(skewed, resource_version="1"), 100.0)
    assert first is not None and first.seen_at == 100.0
    assert decide(first, 101.0, ME, T, leading=False).action is Action.WAIT
    # the same record later keeps its first-seen time; a renewal restarts the clock
    same = observe(first, replace(skewed, resource_version="1"), 110.0)
    assert same is first
    renewed = observe(same, replace(skewed, resource_version="2"), 112.0)
    assert renewed is not None and renewed.seen_at == 112.0
    assert decide(renewed, 120.0, ME, T, leading=False).action is Action.WAIT
    assert decide(renewed, 127.0, ME, T, leading=False).action is Action.ACQUIRE
    assert observe(renewed, None, 130.0) is None


def test_records_without_resource_versions_compare_by_content() -> None:
    a = Record(holder=OTHER, renew_time="t1")
    assert observe(Observation(a, 1.0), Record(holder=OTHER, renew_time="t1"), 5.0) == Observation(a, 1.0)
    assert observe(Observation(a, 1.0), Record(holder=OTHER, renew_time="t2"), 5.0).seen_at == 5.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("last", "now", "passed"), [(0.0, 9.9, False), (0.0, 10.0, True), (5.0, 14.0, False), (5.0, 30.0, True)]
)
def test_deadline(last: float, now: float, passed: bool) -> None:
    assert deadline_passed(last, now, T) is passed


WALL = datetime(2026, 12, 6, 3, 30, 0, 123456, tzinfo=UTC)


def test_claimed_records() -> None:
    stamp = "2026-12-06T03:30:00.123456Z"
    assert micro_time(WALL) == stamp
    new = claimed(None, ME, WALL, T)
    assert new == Record(ME, 15, stamp, stamp, 0)
    assert new.spec() == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": 0,
    }
    theirs = Record(OTHER, 15, "a", "b", 3, "9")
    taken = claimed(theirs, ME, WALL, Timings(2.5, 2.0, 0.5))
    assert taken == Record(ME, 3, stamp, stamp, 4, "9")  # whole seconds, rounded up: never shorter
    renewed = claimed(replace(theirs, holder=ME), ME, WALL, T)
    assert renewed == Record(ME, 15, "a", stamp, 3, "9")
    assert released(renewed, WALL) == Record("", 1, "a", stamp, 3, "9")


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ((15, 15, 2), "renew deadline (15 s) must be shorter than the lease duration (15 s)"),
        ((15, 10, 10), "retry period (10 s) must be shorter than the renew deadline (10 s)"),
        ((15, 10, 0), "must be positive"),
    ],
)
def test_timings_that_cannot_work_are_refused(timings: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Timings(*timings)


# --- the elector against a fake Lease -------------------------------------------------------------------


class FakeLeases:
    """One Lease in memory, with resourceVersions and 409 on a stale write; ``fail`` makes calls raise."""

    namespace, name = "orchest-system", "orchest-operator"

    def __init__(self) -> None:
        self.record: Record | None = None
        self.version = 0
        self.fail = False
        self.timeouts: list[float] = []

    def _check(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        if self.fail:
            raise requests.ConnectionError("API server unreachable")

    def _store(self, record: Record) -> Record:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record

    def get(self, timeout: float) -> Record | None:
        self._check(timeout)
        return self.record

    def create(self, record: Record, timeout: float) -> Record:
        self._check(timeout)
        if self.record is not None:
            raise Conflict("exists")
        return self._store(record)

    def update(self, record: Record, timeout: float) -> Record:
        self._check(timeout)
        if self.record is None or record.resource_version != self.record.resource_version:
            raise Conflict("stale")
        return self._store(record)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(leases: FakeLeases, identity: str, clock: Clock, timings: Timings = T) -> Elector:
    return Elector(leases, identity, timings, clock=clock, wall=lambda: WALL)  # type: ignore[arg-type]


def test_a_standby_takes_over_a_lease_its_holder_stopped_renewing() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = elector(leases, ME, clock), elector(leases, OTHER, clock)
    assert a.attempt().action is Action.CREATE and a.leading
    assert b.attempt() == Decision(Action.WAIT, 2.0) and not b.leading
    clock.now += 10
    assert a.attempt().action is Action.RENEW
    clock.now += 14  # a died right after renewing: b saw that renewal 14 s ago
    assert b.attempt() == Decision(Action.WAIT, 2.0)  # b sees the renewal now: its clock starts here
    clock.now += 14.5
    assert b.attempt() == Decision(Action.WAIT, 0.5)
    clock.now += 0.5
    assert b.attempt().action is Action.ACQUIRE and b.leading
    assert leases.record is not None and leases.record.holder == OTHER and leases.record.transitions == 1


def test_two_standbys_racing_for_a_free_lease_elect_one() -> None:
    leases, clock = FakeLeases(), Clock()
    leases._store(Record(holder="", duration_seconds=1))
    a, b = elector(leases, ME, clock), elector(leases, OTHER, clock)
    stale = leases.record
    assert a.attempt().action is Action.ACQUIRE
    leases_get = leases.get
    leases.get = lambda timeout: stale  # type: ignore[method-assign]  # b read before a wrote
    with pytest.raises(Conflict):
        b.attempt()
    leases.get = leases_get  # type: ignore[method-assign]
    assert not b.leading and b.attempt().action is Action.WAIT


def test_the_holder_gives_up_after_the_renew_deadline_before_anyone_may_take_over() -> None:
    leases, clock = FakeLeases(), Clock()
    a = elector(leases, ME, clock, Timings(3, 2, 0.5))
    a.attempt()
    leases.fail = True
    lost: list[str] = []
    stop = threading.Event()

    # hold() waits on the stop event between attempts; advance the clock at each wait instead of sleeping
    class Ticking(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            clock.now += timeout or 0
            return stop.is_set()

    a.hold(Ticking(), lost.append)
    assert lost == ["could not renew the Lease for 2 s"] and not a.leading
    assert clock.now - 1000.0 == pytest.approx(2.0)  # four failed renewals, half a second apart
    # each request was given only the time left before the deadline (at least half a second)
    assert leases.timeouts[-4:] == pytest.approx([1.5, 1.0, 0.5, 0.5])


def test_the_holder_that_finds_another_in_the_lease_stops_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a = elector(leases, ME, clock)
    a.attempt()
    assert leases.record is not None
    leases._store(replace(leases.record, holder=OTHER))
    lost: list[str] = []
    halt = a.start_holding(lost.append)  # real threads: a 2 s retry period, so stop right after the first
    try:
        a.timings = Timings(0.3, 0.2, 0.01)
        for _ in range(500):
            if lost:
                break
            threading.Event().wait(0.01)
    finally:
        halt()
    assert lost == [f"the Lease is now held by {OTHER!r}"]


def test_a_renewal_thread_that_breaks_reports_the_lease_lost() -> None:
    leases, clock = FakeLeases(), Clock()
    a = elector(leases, ME, clock, Timings(0.3, 0.2, 0.01))
    a.attempt()

    def broken(timeout: float) -> Record | None:
        raise KeyError("content-type")

    leases.get = broken  # type: ignore[method-assign]
    lost: list[str] = []
    a.hold(threading.Event(), lost.append)
    assert lost == ["the Lease renewal failed: KeyError('content-type')"] and not a.leading


def test_acquire_waits_through_failures_and_stops_when_told() -> None:
    leases, clock = FakeLeases(), Clock()
    leases._store(Record(holder=OTHER, duration_seconds=15))
    b = elector(leases, ME, clock)
    waits: list[float] = []

    class Recording(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            clock.now += timeout or 0
            leases.fail = len(waits) == 2  # the API server fails once, on the third look
            return len(waits) >= 20

    assert b.acquire(Recording()) is True
    assert waits[:3] == [2.0, 2.0, 2.0] and sum(waits) == pytest.approx(15.0)  # taken the moment it expired
    stopped = threading.Event()
    stopped.set()
    assert elector(leases, "c", clock).acquire(stopped) is False


def test_release_hands_over_only_our_own_lease() -> None:
    leases, clock = FakeLeases(), Clock()
    a = elector(leases, ME, clock)
    a.attempt()
    a.release()
    assert leases.record is not None and leases.record.holder == "" and not a.leading
    b = elector(leases, OTHER, clock)
    assert b.attempt().action is Action.ACQUIRE
    a.leading = True  # a confused former holder must not release b's Lease
    a.release()
    assert leases.record.holder == OTHER


def test_lease_client_speaks_the_coordination_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchest_operator.leader.lease import LeaseClient

    calls: list[tuple[str, dict[str, Any]]] = []

    class Response:
        def __init__(self, status: int, body: dict[str, Any]) -> None:
            self.status_code, self._body = status, body
            self.reason, self.text = "Service Unavailable", "upstream connect error"

        def json(self) -> dict[str, Any]:
            return self._body

    lease = {"metadata": {"resourceVersion": "5"}, "spec": {"holderIdentity": ME, "leaseDurationSeconds": 15}}

    class Api:
        def get(self, **kwargs: Any) -> Response:
            calls.append(("get", kwargs))
            return [Response(404, {}), Response(200, lease), Response(503, {})][len(calls) - 1]

        def post(self, **kwargs: Any) -> Response:
            calls.append(("post", kwargs))
            return Response(201, lease)

        def put(self, **kwargs: Any) -> Response:
            calls.append(("put", kwargs))
            return Response(409, {})

    client = LeaseClient(Api(), "orchest-system", "orchest-operator")  # type: ignore[arg-type]
    assert client.get(3.0) is None
    assert client.get(3.0) == Record(ME, 15, resource_version="5")
    with pytest.raises(LeaseError, match="503 Service Unavailable: upstream connect error"):
        client.get(3.0)
    assert client.create(Record(ME, 15), 2.0).holder == ME
    with pytest.raises(Conflict):
        client.update(Record(ME, 15, resource_version="5"), 1.0)
    assert [(m, k["version"], k["url"], k["namespace"], k["timeout"]) for m, k in calls] == [
        *[("get", "coordination.k8s.io/v1", "leases/orchest-operator", "orchest-system", 3.0)] * 3,
        ("post", "coordination.k8s.io/v1", "leases", "orchest-system", 2.0),
        ("put", "coordination.k8s.io/v1", "leases/orchest-operator", "orchest-system", 1.0),
    ]
    import json

    put = json.loads(calls[-1][1]["data"])
    assert put["metadata"] == {
        "name": "orchest-operator",
        "namespace": "orchest-system",
        "resourceVersion": "5",
    }


def test_a_standby_answers_its_liveness_probe_until_it_leads() -> None:
    import socket
    import urllib.error
    import urllib.request

    from orchest_operator.leader.probe import standby_liveness

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with standby_liveness(f"{url}/healthz"):
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            assert (response.status, response.read()) == (200, b'{"leader": false}\n')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/metrics", timeout=5)
        assert err.value.code == 404
    # closed: kopf binds the same address once this replica leads
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with standby_liveness(None):
        pass
