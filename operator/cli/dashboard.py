"""``orchest dashboard``: the read-only web view, served from this machine with the user's kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from orchest_operator.cli import CliError

DEFAULT_PORT = 8765


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="serve a live, read-only web view of pipelines and runs",
        description="Serve the dashboard with the current kubeconfig's rights (or the pod's service account "
        "in a cluster). Without -n or -A it shows the current context's namespace.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on ({DEFAULT_PORT})")
    parser.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 inside a pod)"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS", help="show NS (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="show every namespace")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from orchest_operator.dashboard.client import ApiClient, ConfigError, load_configuration
    from orchest_operator.dashboard.server import serve

    if not 0 < args.port < 65536:
        raise CliError(f"--port {args.port}: not a port number", code=2)
    try:
        configuration, default_namespace = load_configuration(args.kubeconfig, args.context)
    except ConfigError as err:
        raise CliError(str(err)) from None
    namespaces = None if args.all_namespaces else (args.namespaces or [default_namespace])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(url: str) -> None:
        scope = "all namespaces" if namespaces is None else ", ".join(namespaces)
        print(f"orchest dashboard of {scope} on {configuration.server}: {url}", flush=True)

    async def main() -> None:
        async with ApiClient(configuration) as client:
            await serve(client, namespaces, args.address, args.port, ready=ready)

    try:
        asyncio.run(main())
    except OSError as err:
        raise CliError(f"cannot listen on {args.address}:{args.port}: {err.strerror or err}") from None
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    return 0
