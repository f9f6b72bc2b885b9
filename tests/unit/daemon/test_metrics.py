"""Metrics on a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from stream_detector.daemon import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_counters_gauges_and_histograms(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    for _ in range(3):
        m.frame_read("door")
    m.frame_dropped("door")
    m.stream_state("door", True)
    m.reconnecting("door")
    m.queue_depth("door", 4)
    m.model_state("door", True)
    m.scored("door", 2.5, 0.04)
    m.inference("cpu", 0.02)
    m.mqtt_state(True)
    m.publish_failed()

    assert value(registry, "stream_detector_frames_read_total", camera="door") == 3
    assert value(registry, "stream_detector_frames_dropped_total", camera="door") == 1
    assert value(registry, "stream_detector_frames_scored_total", camera="door") == 1
    assert value(registry, "stream_detector_reconnects_total", camera="door") == 1
    assert value(registry, "stream_detector_stream_up", camera="door") == 1
    assert value(registry, "stream_detector_queue_depth", camera="door") == 4
    assert value(registry, "stream_detector_model_loaded", camera="door") == 1
    assert value(registry, "stream_detector_anomaly_score", camera="door") == 2.5
    assert value(registry, "stream_detector_scoring_latency_seconds_count", camera="door") == 1
    assert value(registry, "stream_detector_scoring_latency_seconds_bucket", camera="door", le="0.05") == 1
    assert value(registry, "stream_detector_scoring_latency_seconds_bucket", camera="door", le="0.025") == 0
    assert value(registry, "stream_detector_inference_seconds_count", device="cpu") == 1
    assert value(registry, "stream_detector_mqtt_connected") == 1
    assert value(registry, "stream_detector_mqtt_publish_failures_total") == 1
    assert value(registry, "process_cpu_seconds_total") is not None
    assert any(s.name == "python_info" for mf in registry.collect() for s in mf.samples)


def test_series_exist_at_zero_from_first_mention(registry: CollectorRegistry) -> None:
    """Drop ratios and event rates need their series before the first drop or event."""
    m = Metrics(registry)
    m.camera_added("yard")
    assert value(registry, "stream_detector_frames_dropped_total", camera="yard") == 0
    assert value(registry, "stream_detector_events_total", camera="yard", type="start") == 0
    assert value(registry, "stream_detector_anomaly_active", camera="yard") == 0
    assert value(registry, "stream_detector_stream_up", camera="yard") == 0


def test_events_toggle_anomaly_active(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    m.event("door", "start", 0.3)
    assert value(registry, "stream_detector_anomaly_active", camera="door") == 1
    m.event("door", "update", None)
    m.event("door", "end", 0.2)
    assert value(registry, "stream_detector_anomaly_active", camera="door") == 0
    for kind in ("start", "update", "end"):
        assert value(registry, "stream_detector_events_total", camera="door", type=kind) == 1
    assert value(registry, "stream_detector_event_latency_seconds_count", camera="door") == 2
    with pytest.raises(ValueError, match="event type"):
        m.event("door", "begin")


def test_fps_is_an_ewma_of_frame_intervals_and_resets_on_outage(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    m = Metrics(registry, clock=clock, fps_weight=0.5)
    m.frame_read("door")
    assert m.fps("door") == 0.0  # one frame gives no interval
    for _ in range(20):
        clock.now += 0.1
        m.frame_read("door")
    assert m.fps("door") == pytest.approx(10.0)
    clock.now += 0.2
    m.frame_read("door")  # one slow frame moves the estimate halfway: interval 0.15 s
    assert m.fps("door") == pytest.approx(1 / 0.15)
    assert value(registry, "stream_detector_capture_fps", camera="door") == pytest.approx(1 / 0.15)

    m.stream_state("door", False)
    assert value(registry, "stream_detector_capture_fps", camera="door") == 0
    clock.now += 60.0  # the outage must not count as a 60 s frame interval
    m.stream_state("door", True)
    m.frame_read("door")
    clock.now += 0.04
    m.frame_read("door")
    assert m.fps("door") == pytest.approx(25.0)


def test_fps_falls_to_zero_when_frames_stop_while_the_stream_is_up(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    m = Metrics(registry, clock=clock)
    m.stream_state("door", True)
    for _ in range(20):
        clock.now += 0.1
        m.frame_read("door")
    assert value(registry, "stream_detector_capture_fps", camera="door") == pytest.approx(10.0)
    clock.now += 0.9  # frozen: no frame, no loss reported yet
    assert value(registry, "stream_detector_capture_fps", camera="door") == pytest.approx(10.0)
    clock.now += 0.2
    assert value(registry, "stream_detector_capture_fps", camera="door") == 0


def test_no_mqtt_series_without_mqtt(registry: CollectorRegistry) -> None:
    m = Metrics(registry, mqtt=False)
    m.mqtt_state(False)
    m.publish_failed()
    assert b"mqtt" not in generate_latest(registry)
    with_mqtt = CollectorRegistry()
    Metrics(with_mqtt).mqtt_state(False)
    assert value(with_mqtt, "stream_detector_mqtt_connected") == 0


def test_store_and_heartbeat_series_are_read_at_scrape_time(registry: CollectorRegistry) -> None:
    class Store:
        healthy, write_failures, backlog_size, pending = True, 0, 0, 3

    store = Store()
    m = Metrics(registry)
    m.watch_store(store)
    ages = {"inference": 0.5}
    m.watch_threads(lambda: dict(ages))
    assert value(registry, "stream_detector_store_writable") == 1
    assert value(registry, "stream_detector_outbox_backlog") == 3
    store.healthy, store.write_failures, store.backlog_size = False, 2, 1
    ages["inference"] = 20.0
    assert value(registry, "stream_detector_store_writable") == 0
    assert value(registry, "stream_detector_store_write_failures_total") == 2
    assert value(registry, "stream_detector_store_held_events") == 1
    assert value(registry, "stream_detector_thread_heartbeat_age_seconds", thread="inference") == 20


def test_http_series_are_read_from_the_server_at_scrape_time(registry: CollectorRegistry) -> None:
    stats = {"connections": 3, "aborted": 2, "idle_closed": 0}
    Metrics(registry).watch_http(lambda: stats)
    stats["aborted"] = 5
    assert registry.get_sample_value("stream_detector_http_connections") == 3
    assert registry.get_sample_value("stream_detector_http_client_incidents_total",
                                     {"kind": "aborted"}) == 5
    assert registry.get_sample_value("stream_detector_http_client_incidents_total",
                                     {"kind": "idle_closed"}) == 0


def test_camera_removed_removes_its_series_only(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    for cam in ("door", "yard"):
        m.frame_read(cam)
        m.scored(cam, 1.0, 0.01)
        m.event(cam, "start", 0.1)
    m.camera_removed("door")
    text = exposition(registry)
    assert 'camera="door"' not in text
    assert 'camera="yard"' in text
    assert value(registry, "stream_detector_frames_read_total", camera="yard") == 1
    m.camera_removed("door")  # idempotent
    m.frame_read("door")  # a camera that comes back starts from zero
    assert value(registry, "stream_detector_frames_read_total", camera="door") == 1


def test_readiness_needs_a_model_and_a_recent_score(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    m = Metrics(registry, clock=clock)
    assert m.readiness(10.0)[0] is False  # no cameras yet
    m.model_state("door", True)
    ok, detail = m.readiness(10.0)
    assert not ok and detail["cameras"]["door"]["seconds_since_scored"] is None
    m.scored("door", 0.5, 0.01)
    assert m.readiness(10.0)[0] is True
    clock.now += 11.0
    ok, detail = m.readiness(10.0)
    assert not ok and detail["cameras"]["door"]["seconds_since_scored"] == pytest.approx(11.0)


def test_the_active_model_and_the_tamper_state_per_camera(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    m.active_model("door", "day", ["night", "day"])
    assert value(registry, "stream_detector_camera_tampered", camera="door") == 0
    assert value(registry, "stream_detector_active_model", camera="door", model="night") == 0
    m.active_model("door", "night")
    m.tampered("door", True)
    assert value(registry, "stream_detector_active_model", camera="door", model="night") == 1
    assert value(registry, "stream_detector_active_model", camera="door", model="day") == 0
    assert value(registry, "stream_detector_camera_tampered", camera="door") == 1
    m.camera_removed("door")
    assert 'camera="door"' not in exposition(registry)  # every model's series goes with it
