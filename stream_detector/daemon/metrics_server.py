"""The HTTP server of the daemon's health: /metrics (Prometheus), /healthz (the critical threads
beat) and /readyz (every camera scores), on its own thread ("metrics-server").
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """Serves /metrics, /healthz (`liveness`: the critical threads beat) and /readyz (`readiness`).

    A stdlib threading server: scrapes and probes are rare, and it adds no dependency.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 readiness: Readiness, liveness: Readiness | None = None) -> None:
        self.host = host
        self._requested_port = port
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness or (lambda: (True, {}))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None:
            raise RuntimeError("HealthServer is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        server_cls = _Server6 if ":" in self.host else _Server
        self._server = server_cls((self.host, self._requested_port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server",
                                        daemon=True)
        self._thread.start()
        log.info("metrics: serving http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block shutdown


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler_for(health: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(health.registry))
            elif path == "/healthz":
                ok, detail = health.liveness()
                self._json(200 if ok else 503, {"status": "ok" if ok else "stalled", **detail})
            elif path == "/readyz":
                self._readyz()
            else:
                self._json(404, {"status": "not found", "path": path})

        def _readyz(self) -> None:
            try:
                ok, detail = health.readiness()
            except Exception as exc:  # a failing probe is a "not ready" answer, not a dead server
                log.warning("metrics: readiness check failed: %s", exc)
                ok, detail = False, {"error": str(exc)}
            self._json(200 if ok else 503, {"status": "ready" if ok else "not ready", **detail})

        def _json(self, code: int, body: dict[str, Any]) -> None:
            self._send(code, "application/json", json.dumps(body).encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per scrape would drown the daemon's own log

    return Handler
