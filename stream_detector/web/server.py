"""HttpServer: HTTP/1.1 on one event-loop thread ("http") that owns every connection, and a few
worker threads ("http-worker-N") that run the handlers. Slow, idle and aborted clients cost a
socket and a timer, never a thread; every wait has a deadline; incidents are logged once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream_detector.web.protocol import Head, RequestError, read_head, response_head
from stream_detector.web.routes import FileSlice, HttpError, Request, Response, Route, Router

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """How much the server gives any one client. The defaults hold 200 hostile clients (slow,
    idle, aborted) with /healthz answering every time (docs/benchmarks.md)."""

    workers: int = 4              # handler threads: requests beyond wait for one, in order
    max_connections: int = 512    # beyond: the connection idle the longest is closed to make room
    backlog: int = 1024           # the kernel's queue of connections not yet accepted (capped by somaxconn)
    idle_timeout: float = 5.0     # a kept-alive connection waits this long for its next request
    header_timeout: float = 10.0  # request line and headers complete within this
    body_timeout: float = 10.0    # the body complete within this, once the head is in
    write_timeout: float = 30.0   # a response (or each 64 KiB of a file) leaves within this
    max_line: int = 8 * 1024      # request line and each header line
    max_headers: int = 64


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    since: float
    busy: bool = False  # a request is being handled or answered: not evicted for room


class HttpServer:
    """Serves a Router on (host, port); `start` binds (OSError when it cannot), `stop` closes
    every connection and joins the threads."""

    def __init__(self, host: str, port: int, router: Router, limits: Limits = Limits(),
                 name: str = "http") -> None:
        self.host = host
        self._requested_port = port
        self.router = router
        self.limits = limits
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._conns: dict[int, _Conn] = {}
        self._port = 0
        self._bug_logged = -Incidents.EVERY
        self.incidents = Incidents()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if not self._port:
            raise RuntimeError("HttpServer is not started")
        return self._port

    def stats(self) -> dict[str, int]:
        """Open connections and the incident totals since start (for metrics)."""
        return {"connections": len(self._conns), **self.incidents.totals}

    # --- lifecycle (called from the daemon's thread) -------------------------------------------

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(self.limits.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_exception)
        self._server = loop.run_until_complete(asyncio.start_server(
            self._serve, sock=sock, limit=self.limits.max_line, backlog=self.limits.backlog))
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, name=self.name, daemon=True)
        self._thread.start()
        for i in range(self.limits.workers):
            worker = threading.Thread(target=self._work, name=f"{self.name}-worker-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        log.debug("http: serving http://%s:%d/", self.host, self._port)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5.0)
        except (TimeoutError, RuntimeError):
            log.warning("http: connections still closing at stop")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:  # a handler stuck in a call is a daemon thread: not waited on
            worker.join(timeout=1.0)
        self._workers.clear()
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._server = None
        self._port = 0

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_later(Incidents.EVERY, self._report)
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            conn.writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _report(self) -> None:
        self.incidents.report()
        assert self._loop is not None
        self._loop.call_later(Incidents.EVERY, self._report)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own complaints (a transport that failed under a client) are incidents too."""
        self.incidents.add("aborted", str(context.get("exception") or context.get("message")))

    # --- workers -------------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def _call(self, route: Route, request: Request) -> Response:
        """The route's handler on a worker thread (on the loop itself when it is `inline`)."""
        if route.inline:
            return self.router.call(route, request)
        assert self._loop is not None
        loop = self._loop
        done: asyncio.Future[Response] = loop.create_future()

        def job() -> None:
            response = self.router.call(route, request)
            loop.call_soon_threadsafe(lambda: done.cancelled() or done.set_result(response))

        self._jobs.put(job)
        return await done

    # --- connections (on the loop thread) ------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = id(writer)
        self._make_room()
        conn = self._conns[key] = _Conn(writer, time.monotonic())
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else ""
        try:
            first = True
            while await self._one(reader, writer, conn, client, first):
                first = False
        except (ConnectionError, OSError) as exc:
            self.incidents.add("aborted", f"{client}: {exc.__class__.__name__}")
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug (a handler's header with a line break): this connection only
            if time.monotonic() - self._bug_logged >= Incidents.EVERY:
                self._bug_logged = time.monotonic()
                log.exception("http: a connection from %s failed", client)
        finally:
            self._conns.pop(key, None)
            writer.transport.abort()  # nothing left to flush: a closed socket frees its buffers now

    def _make_room(self) -> None:
        """At the limit, the connection that has waited the longest without a request goes."""
        if len(self._conns) < self.limits.max_connections:
            return
        idle = [c for c in self._conns.values() if not c.busy]
        if idle:
            min(idle, key=lambda c: c.since).writer.transport.abort()
            self.incidents.add("evicted", "connection limit reached")

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                   client: str, first: bool) -> bool:
        """Read, handle and answer one request; True to keep the connection for another."""
        lim = self.limits
        conn.busy, conn.since = False, time.monotonic()
        try:
            head = await read_head(reader, lim.header_timeout if first else lim.idle_timeout,
                                   lim.header_timeout, lim.max_headers)
        except RequestError as exc:
            if exc.status:
                self.incidents.add(exc.kind, f"{client}: {exc}")
                await self._send(writer, HttpError(exc.status, str(exc)).response(), False, False)
            elif exc.kind == "idle":
                self.incidents.count("idle closed")
            else:
                self.incidents.add(exc.kind, f"{client}: {exc}")
            return False
        if head is None:
            return False  # the client closed between requests
        conn.busy = True
        response, keep = await self._answer(reader, writer, head, client)
        await self._send(writer, response, keep, head.method == "HEAD")
        return keep

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head,
                      client: str) -> tuple[Response, bool]:
        try:
            route, params = self.router.resolve(head.method, head.path)
            body = await self._body(reader, writer, head, route.max_body)
        except HttpError as exc:
            return exc.response(), False  # the body, if any, was not read: the connection ends
        request = Request(head.method, head.path, head.query, head.headers, body, client, params)
        return await self._call(route, request), head.keep_alive

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head,
                    max_body: int) -> bytes:
        if "transfer-encoding" in head.headers:
            raise HttpError(411, "send the body with a Content-Length")
        try:
            length = int(head.headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > max_body:
            raise HttpError(413, f"body over {max_body} bytes")
        if not length:
            return b""
        if head.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            return await asyncio.wait_for(reader.readexactly(length), self.limits.body_timeout)
        except TimeoutError:
            self.incidents.add("timed out", "body not complete in time")
            raise HttpError(408, "body not complete in time") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("closed inside the body") from None

    async def _send(self, writer: asyncio.StreamWriter, response: Response, keep: bool,
                    head_only: bool) -> None:
        writer.write(response_head(response, keep))
        body = response.body
        if not head_only and isinstance(body, FileSlice):
            await self._send_file(writer, body)
        elif not head_only:
            writer.write(body)
        await self._drain(writer)

    async def _send_file(self, writer: asyncio.StreamWriter, part: FileSlice) -> None:
        with open(part.path, "rb") as fh:  # page-cache reads of 64 KiB: quick enough for the loop
            fh.seek(part.start)
            left = part.length
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise ConnectionAbortedError("file shrank while being served")
                writer.write(chunk)
                left -= len(chunk)
                await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(writer.drain(), self.limits.write_timeout)
        except TimeoutError:
            raise ConnectionAbortedError("client stopped reading") from None


class Incidents:
    """Client faults, counted and reported in one log line at most once a minute, no traceback:
    a client that aborts is the client's business, and a flood of them must not flood the log."""

    EVERY = 60.0
    KINDS = ("aborted", "timed out", "bad request", "evicted", "idle closed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals = {kind.replace(" ", "_"): 0 for kind in self.KINDS}
        self._pending: dict[str, int] = {}
        self._last = ""
        self._reported = -self.EVERY

    def add(self, kind: str, detail: str) -> None:
        with self._lock:
            key = kind.replace(" ", "_")
            self.totals[key] = self.totals.get(key, 0) + 1
            self._pending[kind] = self._pending.get(kind, 0) + 1
            self._last = detail
        if time.monotonic() - self._reported >= self.EVERY:
            self.report()

    def count(self, kind: str) -> None:
        """Counted, never logged: an ordinary event (a kept-alive connection closed when idle)."""
        with self._lock:
            key = kind.replace(" ", "_")
            self.totals[key] = self.totals.get(key, 0) + 1

    def report(self) -> None:
        with self._lock:
            if not self._pending:
                return
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self._pending.items()))
            last, self._pending = self._last, {}
            self._reported = time.monotonic()
        log.warning("http: client connections: %s (last: %s); next report in %.0f s at the "
                    "earliest", counts, last, self.EVERY)
