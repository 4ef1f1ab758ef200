"""``orchest operator``: run the kopf operator against the current kubeconfig or in-cluster config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchest_operator.cli import CliError

if TYPE_CHECKING:  # imported when used: `orchest --help` does not load the operator
    from orchest_operator.leader.elector import Elector

logger = logging.getLogger("orchest_operator.operator")
DEFAULT_LEASE = "orchest-operator"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def register(sub: Any) -> None:
    parser = sub.add_parser("operator", help="run the orchest operator (kopf) against the current cluster")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS", help="watch NS (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    replicas = parser.add_mutually_exclusive_group()
    replicas.add_argument(
        "--standalone",
        action="store_true",
        help="do not coordinate with other replicas (kopf peering); run exactly one replica then",
    )
    replicas.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a coordination.k8s.io Lease, so that replicas can stand by (timings: "
        "ORCHEST_LEADER_ELECTION_*_SECONDS)",
    )
    parser.add_argument(
        "--leader-elect-resource-name",
        default=DEFAULT_LEASE,
        metavar="NAME",
        help=f"the Lease's name (default {DEFAULT_LEASE})",
    )
    parser.add_argument(
        "--leader-elect-resource-namespace",
        metavar="NS",
        help="the Lease's namespace (default: the operator's own, from its service account)",
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on port N")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every reaction")
    parser.set_defaults(handler=run)


def tune_garbage_collector() -> None:
    """The objects of the imports and of start-up live as long as the process: ``gc.freeze`` takes them
    out of the collector's sight, and the young generation is collected every 10,000 allocations instead
    of 700. With 100 busy runs the collector's time went from 2.0 s to 0.6 s of ~10 CPU seconds (measured
    with ``gc.callbacks`` under ``python -m bench concurrent --size 100``), at the same peak memory."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def lease_namespace(args: argparse.Namespace) -> str:
    if args.leader_elect_resource_namespace:
        return str(args.leader_elect_resource_namespace)
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        raise CliError(
            "--leader-elect outside a pod needs --leader-elect-resource-namespace NS", code=2
        ) from None


def identity() -> str:
    """client-go's form: the host (the pod's name in a cluster) and a fresh id, unique per process, so a
    restarted replica never mistakes its predecessor's Lease for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def lose_leadership(reason: str) -> None:
    """Exit now, from the renewal thread: no handler, no Job creation, no status write after this."""
    logger.critical("leader election lost: %s; exiting, to come back as a standby", reason)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(1)


def elect(args: argparse.Namespace, stop: threading.Event) -> Elector | None:
    """Wait for the Lease (answering the liveness probe meanwhile, watching nothing); return the elector
    once leading, or None if ``stop`` was set first.

    SIGTERM and SIGINT set ``stop`` from here on, and ``operate`` hands a set ``stop`` on to kopf, so a
    signal that lands just as this replica takes the Lease still stops it cleanly.
    """
    import pykube

    from orchest_operator import kube
    from orchest_operator.leader.elector import Elector
    from orchest_operator.leader.lease import LeaseClient
    from orchest_operator.leader.probe import standby_liveness
    from orchest_operator.settings import Settings, SettingsError

    try:
        timings = Settings.from_env().lease_timings()
    except SettingsError as err:
        raise CliError(str(err), code=2) from None
    namespace = lease_namespace(args)
    try:
        api = kube.client()
    except (OSError, pykube.exceptions.PyKubeError) as err:
        raise CliError(f"no cluster to elect a leader in: {err}") from None
    leases = LeaseClient(api, namespace, args.leader_elect_resource_name)
    elector = Elector(leases, identity(), timings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with standby_liveness(args.liveness):
        leading = elector.acquire(stop)
    return elector if leading else None


async def operate(args: argparse.Namespace, stop: threading.Event) -> None:
    """kopf's operator, stopped by SIGTERM/SIGINT also when they land before kopf handles them itself
    (a standby told to stop just as it takes the Lease)."""
    import kopf

    loop = asyncio.get_running_loop()
    flag = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(flag.set))
    if stop.is_set():
        flag.set()
    await kopf.operator(
        # With --leader-elect the Lease decides who acts: kopf's own peering stays off.
        standalone=args.standalone or args.leader_elect,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness,
        stop_flag=flag,
    )


def run(args: argparse.Namespace) -> int:
    import kopf
    import prometheus_client

    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        # kopf logs every handler call at INFO: a line per pod event. Keep warnings and errors; the
        # run-level story is in Events and the runs' status.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port)
    stop = threading.Event()
    elector = elect(args, stop) if args.leader_elect else None
    if args.leader_elect and elector is None:
        return 0  # stopped while standing by
    importlib.import_module("orchest_operator.handlers")  # registers every handler with kopf
    tune_garbage_collector()
    halt = elector.start_holding(lose_leadership) if elector else None
    try:
        with contextlib.suppress(asyncio.CancelledError):  # as kopf.run: a cancelled operator has stopped
            asyncio.run(operate(args, stop))
    finally:
        if elector is not None and halt is not None:
            halt()
            elector.release()
    return 0
