"""What the HTTP server serves: the request and response a handler sees, and the Router that maps
a method and a path pattern to a handler, with a per-route guard (authentication) and body limit.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024  # a POST's JSON body; a route that takes more says so
_PARAM = re.compile(r"^\{([a-z_][a-z0-9_]*)(:path)?\}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HttpError(Exception):
    """Raised by a handler (or the server) for a 4xx/5xx answer: `{"error": message}` as JSON."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return Response.json({"error": self.message}, self.status, headers=self.headers)


@dataclass(frozen=True)
class Request:
    """One parsed request. `headers` has lower-case names; `query` keeps each key's last value;
    `params` are the pattern's `{name}` parts, percent-decoded."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""
    params: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON is the client's error (400)."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"body is not JSON ({exc.__class__.__name__})") from None


@dataclass(frozen=True)
class FileSlice:
    """A part of a file the server streams after the handler returned (a slow reader holds no
    worker)."""

    path: Path
    start: int
    length: int


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes | FileSlice = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.body.length if isinstance(self.body, FileSlice) else len(self.body)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, json.dumps(value).encode(), "application/json", dict(headers or {}))

    @classmethod
    def file(cls, path: Path, request: Request, content_type: str,
             headers: Mapping[str, str] | None = None) -> Response:
        """The file, or the one byte range the request's `Range` asks for (206; 416 when it lies
        past the end), so a browser's video player can seek. Several ranges get the whole file."""
        try:
            size = os.stat(path).st_size
        except OSError:
            raise HttpError(404, "no such file") from None
        extra = {"Accept-Ranges": "bytes", **(headers or {})}
        wanted = _byte_range(request.header("range"), size)
        if wanted is None:
            return cls(200, FileSlice(path, 0, size), content_type, extra)
        start, end = wanted
        if start >= size or start > end:
            raise HttpError(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
        end = min(end, size - 1)
        return cls(206, FileSlice(path, start, end - start + 1), content_type,
                   {**extra, "Content-Range": f"bytes {start}-{end}/{size}"})


def _byte_range(value: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None: serve the whole file."""
    match = _RANGE.match(value.strip().replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return None  # absent, several ranges or another unit: RFC 9110 lets us send it all
    first, last = match.groups()
    if first == "":  # the last N bytes
        return max(0, size - int(last)), size - 1
    return int(first), int(last) if last else size - 1


Handler = Callable[[Request], Response]
Guard = Callable[[Request], "Response | None"]  # None lets the request through


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    guard: Guard | None = None
    max_body: int = 0
    inline: bool = False  # runs on the server's event loop: only for handlers that never block

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        mine = self.pattern.strip("/").split("/") if self.pattern != "/" else []
        for i, piece in enumerate(mine):
            param = _PARAM.match(piece)
            if param and param.group(2):  # {name:path}: the rest of the path
                rest = parts[i:]
                if not rest:
                    return None
                params[param.group(1)] = "/".join(unquote(p) for p in rest)
                return params
            if i >= len(parts):
                return None
            if param:
                if not parts[i]:
                    return None
                params[param.group(1)] = unquote(parts[i])
            elif piece != parts[i]:
                return None
        return params if len(parts) == len(mine) else None


class Router:
    """Routes by method and path pattern (`/api/events/{id}`, `/static/{name:path}`). Each route
    may carry a guard (e.g. a token check) and a body limit; a router's `guard` applies to the
    routes added to it that name none. Routers combine with `include`. Add routes before the
    server starts."""

    def __init__(self, guard: Guard | None = None) -> None:
        self.guard = guard
        self._routes: list[Route] = []
        self._bugs = _Throttle(60.0)

    def add(self, method: str, pattern: str, handler: Handler, *, guard: Guard | None = None,
            max_body: int | None = None, inline: bool = False) -> None:
        method = method.upper()
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        if any(r.method == method and r.pattern == pattern for r in self._routes):
            raise ValueError(f"route {method} {pattern} is already served")
        body = max_body if max_body is not None else (DEFAULT_MAX_BODY if method != "GET" else 0)
        self._routes.append(Route(method, pattern, handler, guard or self.guard, body, inline))

    def get(self, pattern: str, handler: Handler, **options: Any) -> None:
        self.add("GET", pattern, handler, **options)

    def post(self, pattern: str, handler: Handler, **options: Any) -> None:
        self.add("POST", pattern, handler, **options)

    def include(self, other: Router) -> None:
        """Serve `other`'s routes too (each keeps its own guard)."""
        for route in other:
            self.add(route.method, route.pattern, route.handler, guard=route.guard,
                     max_body=route.max_body, inline=route.inline)

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self._routes))

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and its params; HttpError 404 (no such path) or 405 (not that method)."""
        parts = path.strip("/").split("/") if path.strip("/") else []
        allowed = []
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, params
            allowed.append(route.method)
        if allowed:
            allow = ", ".join(sorted(set(allowed) | ({"HEAD"} if "GET" in allowed else set())))
            raise HttpError(405, f"{method} is not allowed here", {"Allow": allow})
        raise HttpError(404, "not found")

    def call(self, route: Route, request: Request) -> Response:
        """The guard, then the handler; a handler's bug is a 500 (its traceback logged at most
        once a minute per route, so a bad request repeated cannot flood the log)."""
        try:
            if route.guard is not None and (refused := route.guard(request)) is not None:
                return refused
            return route.handler(request)
        except HttpError as exc:
            return exc.response()
        except Exception:  # a bug in one handler must not take the server down
            if self._bugs.due(route.pattern):
                log.exception("http: %s %s failed", request.method, route.pattern)
            return HttpError(500, "internal error").response()


class _Throttle:
    """At most one `due` per key per `every` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self.every) < self.every:
            return False
        self._last[key] = now
        return True
