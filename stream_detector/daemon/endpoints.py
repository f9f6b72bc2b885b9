"""The daemon's own HTTP endpoints, as a Router for the web server: /metrics (Prometheus), /healthz
(the critical threads beat) and /readyz (every camera scores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from stream_detector.web import Request, Response, Router

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def health_routes(registry: CollectorRegistry, readiness: Readiness,
                  liveness: Readiness | None = None) -> Router:
    """GET /metrics, /healthz (`liveness`: the critical threads beat) and /readyz (`readiness`).

    The probes only read memory under a lock, so they run on the server's event loop (`inline`)
    and answer even while every worker is busy; a scrape renders the registry on a worker."""
    alive = liveness or (lambda: (True, {}))

    def metrics(_: Request) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    def healthz(_: Request) -> Response:
        ok, detail = alive()
        return Response.json({"status": "ok" if ok else "stalled", **detail}, 200 if ok else 503)

    def readyz(_: Request) -> Response:
        try:
            ok, detail = readiness()
        except Exception as exc:  # a failing probe is a "not ready" answer, not a dead server
            log.warning("metrics: readiness check failed: %s", exc)
            ok, detail = False, {"error": str(exc)}
        return Response.json({"status": "ready" if ok else "not ready", **detail},
                             200 if ok else 503)

    router = Router()
    router.get("/metrics", metrics)
    router.get("/healthz", healthz, inline=True)
    router.get("/readyz", readyz, inline=True)
    return router
