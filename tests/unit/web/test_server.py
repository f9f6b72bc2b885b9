"""The HTTP server on real sockets: requests and bodies, keep-alive, byte ranges; slow, idle and
aborted clients cost no thread, are closed by the server and are logged once; a full house
makes room; probes answer while every worker is busy."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_detector.web import HttpError, HttpServer, Limits, Request, Response, Router

SHORT = Limits(workers=2, max_connections=40, idle_timeout=0.5, header_timeout=1.0,
               body_timeout=1.0, write_timeout=1.0)


def app(tmp_path: Path, gate: threading.Event | None = None) -> Router:
    router = Router()
    router.get("/healthz", lambda _: Response.json({"status": "ok"}), inline=True)
    router.post("/echo", lambda r: Response.json({"got": r.json(), "client": r.client}))
    router.get("/clip.mp4", lambda r: Response.file(tmp_path / "clip.mp4", r, "video/mp4"))

    def slow(_: Request) -> Response:
        assert gate is not None
        gate.wait(10)
        return Response(200, b"done")

    router.get("/slow", slow)
    router.get("/teapot", lambda _: (_ for _ in ()).throw(HttpError(418, "short and stout")))
    router.get("/split", lambda _: Response(200, b"x", headers={"X-Bad": "a\r\nInjected: 1"}))
    return router


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[HttpServer]:
    (tmp_path / "clip.mp4").write_bytes(bytes(range(256)) * 1000)
    with HttpServer("127.0.0.1", 0, app(tmp_path), SHORT) as srv:
        yield srv


def conn(server: HttpServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)


def raw(server: HttpServer, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> float:
    """Seconds until the server closed `sock` (reads what it sends until EOF or a reset)."""
    start = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_get_post_keep_alive_head_and_ranges(server: HttpServer) -> None:
    c = conn(server)
    c.request("POST", "/echo", body=json.dumps({"verdict": "confirmed"}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"got": {"verdict": "confirmed"},
                                                       "client": "127.0.0.1"}
    c.request("GET", "/clip.mp4", headers={"Range": "bytes=1000-1099"})  # same connection
    r = c.getresponse()
    data = r.read()
    assert r.status == 206 and r.getheader("Content-Range") == "bytes 1000-1099/256000"
    assert data == (bytes(range(256)) * 5)[1000 % 256:][:100]
    c.request("HEAD", "/clip.mp4")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == "256000" and r.read() == b""
    c.request("GET", "/clip.mp4")
    assert len(c.getresponse().read()) == 256000
    c.request("GET", "/teapot")
    r = c.getresponse()
    assert r.status == 418 and json.loads(r.read()) == {"error": "short and stout"}
    c.close()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"BREW /healthz HTTP/1.1\r\n\r\n", 501),
    (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 70 + b"\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /healthz HTTP/1.1\r\n\r\n", 405),
])
def test_bad_requests_get_a_4xx_json_error_and_the_connection_ends(
        server: HttpServer, request_bytes: bytes, status: int) -> None:
    sock = raw(server, request_bytes)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert set(json.loads(payload)) == {"error"}


def test_idle_slow_and_half_sent_clients_are_closed_by_the_server(server: HttpServer) -> None:
    idle = raw(server)
    slow = raw(server, b"GET /healthz HTTP/1.1\r\n")  # then never the rest of the head
    body = raw(server, b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    kept = conn(server)
    kept.request("GET", "/healthz")
    kept.getresponse().read()
    assert closed_by_server(idle, 3) < 1.5      # header_timeout 1.0
    assert closed_by_server(slow, 3) < 1.5
    assert closed_by_server(body, 3) < 1.5      # body_timeout 1.0 (after a 408)
    assert closed_by_server(kept.sock, 3) < 1.0  # idle_timeout 0.5 between requests
    assert server.stats()["connections"] == 0


def test_a_client_that_never_reads_is_dropped_after_the_write_timeout(server: HttpServer) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    for _ in range(200):  # pipelined: 51 MB asked, nothing read
        sock.sendall(b"GET /clip.mp4 HTTP/1.1\r\n\r\n")
    deadline = time.monotonic() + 5
    while server.stats()["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.stats()["connections"] == 0
    sock.close()


def test_aborted_clients_are_logged_once_without_a_traceback(
        server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(30):
            sock = raw(server, b"GET /clip.mp4 HTTP/1.1\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset mid-response
        for _ in range(10):
            raw(server, b"GET /clip").close()  # closed inside the head
        deadline = time.monotonic() + 3
        while server.stats()["aborted"] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert server.stats()["aborted"] >= 30
    lines = [r for r in caplog.records if r.name.startswith(("stream_detector", "asyncio"))]
    assert len(lines) <= 1 and all(r.exc_info is None for r in lines)
    assert lines and "aborted" in lines[0].getMessage()


def test_a_full_house_of_idle_clients_makes_room_for_a_probe(server: HttpServer) -> None:
    hogs = [raw(server) for _ in range(SHORT.max_connections + 10)]
    c = conn(server)
    c.request("GET", "/healthz")
    assert c.getresponse().status == 200
    assert server.stats()["evicted"] >= 10
    for sock in hogs:
        sock.close()


def test_probes_answer_while_every_worker_is_busy_and_threads_stay_bounded(tmp_path: Path) -> None:
    gate = threading.Event()
    (tmp_path / "clip.mp4").write_bytes(b"x")
    before = threading.active_count()
    with HttpServer("127.0.0.1", 0, app(tmp_path, gate), SHORT) as srv:
        stuck = []
        for _ in range(SHORT.workers + 2):
            c = conn(srv)
            c.request("GET", "/slow")
            stuck.append(c)
        idle = [raw(srv) for _ in range(30)]
        probe = conn(srv)
        start = time.monotonic()
        probe.request("GET", "/healthz")
        assert probe.getresponse().status == 200 and time.monotonic() - start < 0.5
        assert threading.active_count() - before == 1 + SHORT.workers
        gate.set()
        assert [c.getresponse().read() for c in stuck] == [b"done"] * len(stuck)
        for sock in idle:
            sock.close()
    assert threading.active_count() == before  # stop joins the loop and the workers


def test_stop_closes_open_connections_and_releases_the_port(tmp_path: Path) -> None:
    srv = HttpServer("127.0.0.1", 0, app(tmp_path), SHORT)
    srv.start()
    port = srv.port
    held = raw(srv)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 2
    assert closed_by_server(held, 2) < 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with pytest.raises(RuntimeError):
        srv.port  # noqa: B018


def test_a_header_with_a_line_break_ends_that_connection_only(
        server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            sock = raw(server, b"GET /split HTTP/1.1\r\n\r\n")
            assert sock.recv(4096) == b""  # nothing sent: no injected header reaches a client
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
    c = conn(server)
    c.request("GET", "/healthz")
    assert c.getresponse().status == 200
