"""The daemon's HTTP endpoints the probes and Prometheus use, on the real web server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_detector.daemon import Metrics, health_routes
from stream_detector.web import HttpServer


class Probe:
    """A readiness callback the test can flip."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, {"cameras": {"door": {"ready": self.ready}}}


@pytest.fixture()
def served(registry: CollectorRegistry) -> Iterator[tuple[HttpServer, Probe]]:
    probe = Probe()
    server = HttpServer("127.0.0.1", 0, health_routes(registry, probe))
    server.start()
    try:
        yield server, probe
    finally:
        server.stop()


def get(server: HttpServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_http_endpoints(served: tuple[HttpServer, Probe], registry: CollectorRegistry,
                        capsys: pytest.CaptureFixture[str]) -> None:
    server, probe = served
    assert server.port > 0
    Metrics(registry).frame_read("door")

    code, ctype, body = get(server, "/metrics")
    assert code == 200 and ctype.startswith("text/plain") and "version=" in ctype
    assert b'stream_detector_frames_read_total{camera="door"} 1.0' in body
    assert b"process_cpu_seconds_total" in body

    code, ctype, body = get(server, "/healthz")
    assert (code, ctype, json.loads(body)) == (200, "application/json", {"status": "ok"})

    code, _, body = get(server, "/readyz")
    assert code == 503 and json.loads(body)["cameras"]["door"]["ready"] is False
    probe.ready = True
    code, _, body = get(server, "/readyz")
    assert code == 200 and json.loads(body)["status"] == "ready"

    assert get(server, "/nope")[0] == 404
    assert capsys.readouterr().err == ""  # no access log on stderr


def test_readiness_that_raises_is_not_ready(registry: CollectorRegistry) -> None:
    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("store locked")

    with HttpServer("127.0.0.1", 0, health_routes(registry, broken)) as server:
        code, _, body = get(server, "/readyz")
    assert code == 503 and "store locked" in json.loads(body)["error"]


def test_stop_releases_the_port(registry: CollectorRegistry) -> None:
    server = HttpServer("127.0.0.1", 0, health_routes(registry, Probe()))
    server.start()
    port = server.port
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
