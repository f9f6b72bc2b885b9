"""HTTP/1.1 on the wire: a request's head read under deadlines and checked (line lengths, header
count, version), and a response's status line and headers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from stream_detector.web.routes import Response

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestError(Exception):
    """A request that cannot be served. `status` 0: close without an answer (idle, timed out or
    gone); `kind` names the incident ("idle" is an ordinary keep-alive expiry, not one)."""

    def __init__(self, message: str, status: int = 0, kind: str = "bad request") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Head:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    keep_alive: bool


async def read_head(reader: asyncio.StreamReader, first_timeout: float, timeout: float,
                    max_headers: int) -> Head | None:
    """The next request's head: its first line within `first_timeout` s, all of it within
    `timeout` s; None when the client closed the connection before sending a byte."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    line = await _line(reader, min(first_timeout, timeout), idle=True)
    if line is None:
        return None
    method, target, version = _request_line(line)
    headers: dict[str, str] = {}
    for _ in range(max_headers + 1):
        raw = await _line(reader, deadline - loop.time(), idle=False)
        if raw is None:
            raise RequestError("closed inside the request head", kind="aborted")
        if not raw:
            break
        name, sep, value = raw.partition(":")
        if not sep or not name or name != name.strip():
            raise RequestError("malformed header line", 400)
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    else:
        raise RequestError(f"more than {max_headers} header lines", 431)
    url = urlsplit(target)
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return Head(method, url.path or "/", dict(parse_qsl(url.query)), headers, keep)


async def _line(reader: asyncio.StreamReader, timeout: float, idle: bool) -> str | None:
    """One CRLF-ended line without its ending; None at a clean end of the stream."""
    try:
        raw = await asyncio.wait_for(reader.readline(), max(timeout, 0.0))
    except TimeoutError:
        raise RequestError("idle" if idle else "request head not complete in time",
                           kind="idle" if idle else "timed out") from None
    except ValueError:  # over the reader's limit (Limits.max_line)
        raise RequestError("request line or header line too long", 431) from None
    if not raw:
        return None
    if not raw.endswith(b"\n"):
        raise RequestError("closed inside the request head", kind="aborted")
    return raw.rstrip(b"\r\n").decode("latin-1")


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3:
        raise RequestError("malformed request line", 400)
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise RequestError("unsupported HTTP version", 505)
    if method not in METHODS:
        raise RequestError("unknown method", 501)
    if not (target.startswith("/") or target.startswith("http://")):
        raise RequestError("malformed request target", 400)
    return method, target, version


def response_head(response: Response, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}",
             f"Content-Type: {response.content_type}",
             f"Content-Length: {response.length}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    for name, value in response.headers.items():
        if "\r" in name + value or "\n" in name + value:  # a handler's bug must not split the head
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
