"""The web: the daemon's HTTP server and what it serves. One server carries every endpoint
(metrics and health, the review API and page); each module that serves something builds a Router
and the daemon combines them.

  server.py    HttpServer: one event-loop thread owns the connections, a few workers run handlers;
               Limits (workers, connections, backlog, timeouts); Incidents (client faults, logged
               at most once a minute)
  protocol.py  HTTP/1.1 on the wire: a request's head under deadlines, a response's head
  routes.py    Router (method + path pattern -> handler, per-route guard and body limit),
               Request, Response (bytes, JSON, a file with byte ranges), HttpError
"""

from stream_detector.web.routes import (
    DEFAULT_MAX_BODY,
    FileSlice,
    Guard,
    Handler,
    HttpError,
    Request,
    Response,
    Route,
    Router,
)
from stream_detector.web.server import HttpServer, Incidents, Limits

__all__ = [
    "DEFAULT_MAX_BODY",
    "FileSlice",
    "Guard",
    "Handler",
    "HttpError",
    "HttpServer",
    "Incidents",
    "Limits",
    "Request",
    "Response",
    "Route",
    "Router",
]
