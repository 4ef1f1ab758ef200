"""The liveness endpoint of a standby replica, which runs no kopf (kopf serves it once leading).

A standby is alive and healthy while it waits: without an answer here the kubelet would restart it every
minute. The server is closed before kopf binds the same address.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class _Standby(BaseHTTPRequestHandler):
    path_served = "/healthz"

    def do_GET(self) -> None:
        ok = self.path.split("?", 1)[0] == self.path_served
        body = b'{"leader": false}\n' if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json" if ok else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # a probe every few seconds is not news
        pass


@contextlib.contextmanager
def standby_liveness(endpoint: str | None) -> Iterator[None]:
    """Answer ``endpoint`` (kopf's ``--liveness`` URL, e.g. ``http://0.0.0.0:8080/healthz``) meanwhile."""
    if not endpoint:
        yield
        return
    url = urlsplit(endpoint)
    handler = type("Standby", (_Standby,), {"path_served": url.path or "/"})
    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
