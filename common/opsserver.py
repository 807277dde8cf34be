"""``/metrics``, ``/healthz`` and ``/readyz`` for processes that serve no HTTP of their own.

Workers, the relay and the notifier run this on ``metrics_host:metrics_port`` in a daemon thread,
so Kubernetes probes and Prometheus reach them the same way they reach the gateway.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], dict[str, str]]
"""Returns component name -> "ok" or a reason; ready when every value is "ok"."""


def _handler(readiness: ReadinessCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b'{"status": "ok"}', "application/json")
            elif self.path == "/readyz":
                try:
                    checks = readiness()
                except Exception as exc:
                    checks = {"readiness": f"error: {type(exc).__name__}"}
                ready = all(value == "ok" for value in checks.values())
                body = json.dumps({"ready": ready, "checks": checks}).encode()
                self._send(200 if ready else 503, body, "application/json")
            else:
                self._send(
                    404, b'{"error": {"code": "not_found", "message": "no such path"}}', "application/json"
                )

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # probes every few seconds would drown the log

    return Handler


LOOPBACK = "127.0.0.1"


def start_ops_server(
    port: int, readiness: ReadinessCheck, host: str = LOOPBACK
) -> ThreadingHTTPServer | None:
    """Serve in a daemon thread; port 0 disables it. A port already taken is logged, not fatal.

    Loopback unless told otherwise: /metrics of a process on a laptop or a shared host is nobody
    else's business. In a pod or a container, where Prometheus and probes come from outside, the
    deployment sets ``metrics_host: 0.0.0.0``.
    """
    if port == 0:
        return None
    try:
        server = ThreadingHTTPServer((host, port), _handler(readiness))
    except OSError as exc:
        log.warning("metrics/health server not started on %s:%d: %s", host, port, exc)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ops-server", daemon=True).start()
    return server
