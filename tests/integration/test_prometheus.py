"""A real Prometheus scrapes the daemon's HTTP server: every dashboard query and alert rule must find series.

Catches what unit tests cannot: metric names that drift from the dashboard or the rules, PromQL that
Prometheus rejects, and exposition Prometheus cannot parse.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import pytest
from prom_helpers import (
    DASHBOARD,
    PROM_DIR,
    Prometheus,
    alert_rules,
    dashboard_queries,
    require_binary,
    split_alert,
    start_prometheus,
    wait_for,
    wait_for_scrapes,
)
from prometheus_client import CollectorRegistry

from stream_detector.daemon import Metrics, health_routes
from stream_detector.web import HttpServer

pytestmark = pytest.mark.integration

ALERTS = ("StreamDetectorDown", "StreamDetectorCameraDown", "StreamDetectorNoFrames",
          "StreamDetectorHighDropRate", "StreamDetectorAnomalyActive", "StreamDetectorMqttDisconnected",
          "StreamDetectorCameraNotScored", "StreamDetectorStoreFailing", "StreamDetectorWorkerStalled",
          "StreamDetectorCameraTampered")


class FakeStore:
    """The store gauges' source: writable, nothing held or pending."""

    healthy = True
    write_failures = 0
    backlog_size = 0
    pending = 0


class FakeDaemon:
    """Drives Metrics the way the daemon would: two cameras at ~20 fps, "yard" dropping a third."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fake-daemon", daemon=True)
        m = metrics
        m.watch_store(FakeStore())
        m.watch_threads(lambda: {"inference": 0.1, "emitter": 0.2, "publisher": 0.3})
        m.mqtt_state(True)
        m.publish_failed()
        for cam in ("door", "yard"):
            m.model_state(cam, True)
            m.stream_state(cam, True)
        m.reconnecting("yard")
        m.event("door", "start", 0.3)
        m.event("door", "update", 0.2)
        m.event("yard", "start", 0.3)
        m.event("yard", "end", None)
        m.stream_state("yard", False)  # yard is down from here on; door keeps an open anomaly
        m.tampered("door", False)
        m.tampered("yard", True)  # its picture stopped matching its scene before it went down

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(0.05):
            n += 1
            m = self.metrics
            m.frame_read("door")
            m.scored("door", 3.0, 0.04)
            m.inference("cpu", 0.012)
            m.queue_depth("door", n % 4)
            m.frame_read("yard")
            if n % 3 == 0:
                m.frame_dropped("yard")
            else:
                m.scored("yard", 0.5, 0.2)

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus with the repo's config and rules, after at least three scrapes of fake traffic."""
    tmp = tmp_path_factory.mktemp("prometheus")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with FakeDaemon(metrics), HttpServer("127.0.0.1", 0, health_routes(registry, lambda: (True, {}))) as server:
        metrics.watch_http(server.stats)
        prom = start_prometheus(server.port, tmp)
        try:
            wait_for_scrapes(prom)
            yield prom
        finally:
            prom.stop()


def test_every_dashboard_query_returns_series(prometheus: Prometheus) -> None:
    queries = dashboard_queries(DASHBOARD)
    assert len(queries) >= 15
    empty = [f"{title}: {expr}" for title, expr in queries if not prometheus.query(expr)]
    assert not empty, "dashboard queries without series:\n" + "\n".join(empty)


def test_dashboard_values_match_what_was_recorded(prometheus: Prometheus) -> None:
    """Spot checks that names, labels and buckets line up, not just that something came back."""
    def by_camera(expr: str) -> dict[str, float]:
        return {r["metric"]["camera"]: float(r["value"][1]) for r in prometheus.query(expr)}

    queries = dict((expr, title) for title, expr in dashboard_queries(DASHBOARD))
    p95 = next(e for e in queries if e.startswith("histogram_quantile(0.95") and "scoring_latency" in e)
    latency = by_camera(p95)
    assert 0.025 < latency["door"] <= 0.05  # every door frame took 0.04 s
    assert 0.1 < latency["yard"] <= 0.25  # every yard frame took 0.2 s
    share = next(e for e in queries if "frames_dropped" in e and "/" in e)
    assert by_camera(share)["yard"] == pytest.approx(1 / 3, abs=0.1)
    assert by_camera(share)["door"] == 0
    assert by_camera('stream_detector_stream_up{camera=~".*"}') == {"door": 1.0, "yard": 0.0}
    assert by_camera('stream_detector_capture_fps{camera=~".*"}')["door"] > 5
    variable = prometheus.api("label/camera/values", **{"match[]": "stream_detector_stream_up"})
    assert sorted(variable) == ["door", "yard"]  # what the $camera template variable lists


def test_every_alert_query_returns_series(prometheus: Prometheus) -> None:
    rules = alert_rules(prometheus)
    assert sorted(rules) == sorted(ALERTS)
    source = (PROM_DIR / "alerts.yml").read_text()
    assert source.count("- alert:") == len(ALERTS)
    for name, rule in rules.items():
        query, _, _ = split_alert(str(rule["query"]))
        assert prometheus.query(query), f"{name}: {query!r} returns no series"


def test_rules_evaluate_and_fire(prometheus: Prometheus) -> None:
    """Prometheus evaluates every rule without error; the open anomaly and yard's tampered picture
    fire, yard is pending down."""
    wait_for(lambda: all(r["health"] == "ok" for r in alert_rules(prometheus).values()),
             15, "every alert rule to be evaluated")

    def alerts() -> dict[tuple[str, str], str]:
        return {(a["labels"]["alertname"], a["labels"].get("camera", "")): a["state"]
                for a in prometheus.api("alerts")["alerts"]}

    wait_for(lambda: alerts().get(("StreamDetectorAnomalyActive", "door")) == "firing", 15,
             "StreamDetectorAnomalyActive to fire for door")
    wait_for(lambda: alerts().get(("StreamDetectorCameraTampered", "yard")) == "firing", 15,
             "StreamDetectorCameraTampered to fire for yard")
    current = alerts()
    assert ("StreamDetectorCameraTampered", "door") not in current
    assert current.get(("StreamDetectorCameraDown", "yard")) == "pending"  # for: 1m
    assert ("StreamDetectorCameraDown", "door") not in current
    assert ("StreamDetectorAnomalyActive", "yard") not in current  # its event ended
    assert not any(name == "StreamDetectorMqttDisconnected" for name, _ in current)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    config = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", str(PROM_DIR / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"{len(ALERTS)} rules found" in rules.stdout
