"""The MQTT sink and the Publisher against a real mosquitto: availability, Last Will, events in
order and valid against the published schema, retained anomaly state, Home Assistant discovery,
and a broker outage that loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import Broker, running_broker, subscribed
from schema_check import errors

from stream_detector.config import MqttConfig
from stream_detector.errors import ConfigError
from stream_detector.messages import Box, Event
from stream_detector.outputs import EventStore, MqttSink, Publisher, Sinks, event_payload

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "stream_detector" / "schema" / "event.schema.json").read_text())
PREFIX = "sd-test"


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path) as b:
        yield b


@contextmanager
def running_sink(config: MqttConfig, cameras: list[str], **kw: Any) -> Iterator[MqttSink]:
    sink = MqttSink(config, cameras, **kw)
    sink.start()
    try:
        wait_until(lambda: sink.connected)
        yield sink
    finally:
        sink.stop()


def wait_until(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def config(broker: Broker, **kw: Any) -> MqttConfig:
    return MqttConfig(port=broker.port, topic_prefix=PREFIX, client_id="sd-daemon", **kw)


def event_stream(n: int) -> Iterator[tuple[Event, dict[str, Any]]]:
    """n anomalies, each new -> update -> end, with payloads chained through `before`."""
    for i in range(n):
        start = Event(f"ev{i}", "door", "start", 1000.0 + i, 5.0 + i, None, None, 3.0, 10,
                      Box(0, 0, 16, 16), 3.0)
        before = None
        for ev in (start, Event(**{**start.__dict__, "type": "update", "box": None}),
                   Event(**{**start.__dict__, "type": "end", "end_wall": 1002.0 + i,
                            "end_stream": 7.0 + i})):
            payload = event_payload(ev, before, host="cam-host")
            before = payload["after"]
            yield ev, payload


def test_available_online_retained_discovery_and_clean_offline(broker: Broker) -> None:
    states: list[bool] = []
    cfg = config(broker, homeassistant_prefix="homeassistant")
    with running_sink(cfg, ["door", "yard"], on_state=states.append) as sink:
        with subscribed(broker.port, f"{PREFIX}/available") as sub:  # joins late: retained
            first = sub.wait_for(lambda m: len(m) >= 1)[0]
            assert first == (f"{PREFIX}/available", b"online", True)
        with subscribed(broker.port, "homeassistant/#") as ha:
            msgs = ha.wait_for(lambda m: len(m) >= 8)
        with subscribed(broker.port, f"{PREFIX}/available") as sub:
            sink.stop()  # says offline itself: a clean disconnect suppresses the Will
            sub.wait_for(lambda m: any(p == b"offline" for _, p, _ in m))
    assert states == [True, False]
    configs = {t: json.loads(p) for t, p, retained in msgs if retained}
    assert set(configs) == {f"homeassistant/{kind}/{PREFIX}/{cam}_{what}/config"
                            for cam in ("door", "yard")
                            for kind, what in (("binary_sensor", "anomaly"),
                                               ("binary_sensor", "tampered"), ("sensor", "score"),
                                               ("image", "snapshot"))}
    door = configs[f"homeassistant/binary_sensor/{PREFIX}/door_anomaly/config"]
    assert door["state_topic"] == f"{PREFIX}/door/anomaly"
    keys = ("payload_on", "payload_off", "device_class")
    assert [door[k] for k in keys] == ["ON", "OFF", "motion"]
    assert door["availability_topic"] == f"{PREFIX}/available"
    tampered = configs[f"homeassistant/binary_sensor/{PREFIX}/door_tampered/config"]
    assert tampered["state_topic"] == f"{PREFIX}/door/tampered"
    assert [tampered[k] for k in keys] == ["ON", "OFF", "problem"]  # Home Assistant's problem sensor
    assert len({c["unique_id"] for c in configs.values()}) == 8
    image = configs[f"homeassistant/image/{PREFIX}/door_snapshot/config"]
    assert image["image_topic"] == f"{PREFIX}/door/snapshot"
    assert image["json_attributes_topic"] == door["json_attributes_topic"] == f"{PREFIX}/door/last_event"


def test_events_in_order_schema_valid_and_retained_state(broker: Broker, tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    with subscribed(broker.port, f"{PREFIX}/#") as sub, \
            running_sink(config(broker, score_interval=60.0), ["door"]) as sink:
        publisher = Publisher(store, Sinks([sink], sink))
        publisher.start()
        sent = []
        for ev, payload in event_stream(3):
            store.append(ev, payload)
            sent.append(payload)
            publisher.wake()
        sub.wait_for(lambda m: sum(t == sink.events_topic for t, _, _ in m) >= len(sent))
        # The publisher follows the "end" with the camera's OFF: the state after its event.
        sub.wait_for(lambda m: m[-1][:2] == (f"{PREFIX}/door/anomaly", b"OFF"))
        assert sub.on(f"{PREFIX}/door/anomaly") == [b"ON", b"OFF"] * 3
        sink.anomaly_state("door", True)
        for value in (1.5, 2.5, 3.5):  # rate-limited: one per score_interval
            sink.score("door", value)
        sink.snapshot("door", b"\xff\xd8jpeg\xff\xd9")
        sub.wait_for(lambda m: any(t.endswith("/snapshot") for t, _, _ in m))
        assert publisher.stop(5)
        with subscribed(broker.port, f"{PREFIX}/door/anomaly") as late:
            assert late.wait_for(lambda m: len(m) >= 1)[0][1:] == (b"ON", True)
        sink.anomaly_state("door", False)
        sub.wait_for(lambda m: m[-1][:2] == (f"{PREFIX}/door/anomaly", b"OFF"))
    received = [json.loads(p) for p in sub.on(f"{PREFIX}/events")]
    assert received == sent
    for payload in received:
        assert errors(payload, SCHEMA) == [], payload
    assert [p["type"] for p in received[:3]] == ["new", "update", "end"]
    assert sub.on(f"{PREFIX}/door/score") == [b"1.5000"]
    assert sub.on(f"{PREFIX}/door/snapshot") == [b"\xff\xd8jpeg\xff\xd9"]
    assert store.unpublished() == []
    store.close()


def test_a_verdict_set_over_mqtt_is_stored_published_and_shown_in_the_last_event(
        broker: Broker, tmp_path: Path) -> None:
    from stream_detector.outputs import Reviews

    store = EventStore(tmp_path / "events.sqlite")
    publisher: Publisher | None = None
    reviews = Reviews(store, lambda: publisher.wake() if publisher else None)
    verdict_schema = json.loads((ROOT / "stream_detector" / "schema" / "verdict.schema.json")
                                .read_text())
    with subscribed(broker.port, f"{PREFIX}/#") as sub, \
            running_sink(config(broker), ["door"], on_verdict=reviews.from_mqtt,
                         public_url=lambda: "http://cams.example:9108") as sink:
        publisher = Publisher(store, Sinks([sink], sink))
        publisher.start()
        for ev, payload in event_stream(1):
            store.append(ev, payload)
        publisher.wake()
        sub.wait_for(lambda m: any(t == f"{PREFIX}/door/last_event" for t, _, _ in m))
        with subscribed(broker.port, f"{PREFIX}/door/verdict/set") as cmd:  # a client of ours
            cmd._client.publish(f"{PREFIX}/door/verdict/set", b"not json", qos=1)
            cmd._client.publish(f"{PREFIX}/door/verdict/set",
                               json.dumps({"id": "ev0", "verdict": "false_alarm"}), qos=1)
            sub.wait_for(lambda m: any(t == f"{PREFIX}/events/verdict" for t, _, _ in m))
        sub.wait_for(lambda m: b"false_alarm" in m[-1][1] and m[-1][0].endswith("last_event"))
        assert publisher.stop(5)
    verdicts = [json.loads(p) for p in sub.on(f"{PREFIX}/events/verdict")]
    assert [(v["id"], v["verdict"], v["source"]) for v in verdicts] == [("ev0", "false_alarm", "mqtt")]
    assert errors(verdicts[0], verdict_schema) == []
    last = [json.loads(p) for p in sub.on(f"{PREFIX}/door/last_event")]
    assert last[-1]["event_id"] == "ev0" and last[-1]["verdict"] == "false_alarm"
    assert last[-1]["snapshot_url"] is None and last[-1]["clip_url"] is None  # none were made
    assert store.events()[0]["verdict"] == "false_alarm"
    store.close()


def test_removed_cameras_leave_no_retained_state_or_snapshot_even_if_removed_offline(
        tmp_path: Path) -> None:
    # Root, so that mosquitto can write its persistence file under pytest's private folder: the
    # retained messages must survive the restart for the clear sent on reconnect to matter.
    (tmp_path / "b").mkdir()
    with running_broker(tmp_path / "b", extra="user root\n") as broker, \
            running_sink(config(broker), ["door", "yard", "gate"]) as sink:
        for cam in ("door", "yard", "gate"):
            sink.anomaly_state(cam, True)
            sink.snapshot(cam, b"jpeg of " + cam.encode())
            ev, payload = next(event_stream(1))
            payload["after"]["camera"] = cam  # retains <camera>/last_event
            assert sink.deliver_event(1, payload)
        with subscribed(broker.port, f"{PREFIX}/gate/snapshot") as sub:
            sub.wait_for(lambda m: len(m) >= 1)
        sink.cameras_changed(["door", "gate"])  # yard removed by a reload
        sink.anomaly_state("yard", False)  # its last event, delivered after the clear
        broker.stop()
        wait_until(lambda: not sink.connected)
        sink.cameras_changed(["door"])  # gate removed while the broker is away
        broker.start()
        wait_until(lambda: sink.connected, timeout=20)
        with subscribed(broker.port, f"{PREFIX}/#") as late:
            late.wait_for(lambda m: (f"{PREFIX}/door/snapshot", b"jpeg of door", True) in m)
            time.sleep(0.5)  # anything else retained arrives with it
            retained = {t for t, _, r in late.messages if r}
    assert retained == {f"{PREFIX}/available", f"{PREFIX}/door/anomaly", f"{PREFIX}/door/snapshot",
                        f"{PREFIX}/door/last_event"}


def test_schema_rejects_malformed_payloads() -> None:
    good = next(event_stream(1))[1]
    assert errors(good, SCHEMA) == []
    assert errors({**good, "type": "start"}, SCHEMA)
    assert errors({**good, "after": {**good["after"], "box": [1, 2, 3]}}, SCHEMA)
    assert errors({**good, "after": {**good["after"], "extra": 1}}, SCHEMA)


def test_unreadable_tls_file_fails_fast_naming_the_key(tmp_path: Path) -> None:
    cfg = MqttConfig(tls_ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca_file"):
        MqttSink(cfg, ["door"]).start()


def test_broker_outage_loses_nothing_and_keeps_order(broker: Broker, tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    events = list(event_stream(2))  # 6 messages
    # A persistent session, so the broker queues what arrives while this subscriber reconnects.
    watcher = {"client_id": "sd-watcher", "persistent": True}
    with subscribed(broker.port, f"{PREFIX}/events", **watcher) as sub, \
            running_sink(config(broker), ["door"]) as sink:
        publisher = Publisher(store, Sinks([sink], sink), min_backoff=0.1, max_backoff=0.5)
        publisher.start()
        for ev, payload in events[:2]:
            store.append(ev, payload)
        publisher.wake()
        sub.wait_for(lambda m: len(m) >= 2)

        broker.stop()
        wait_until(lambda: not sink.connected)
        for ev, payload in events[2:]:
            store.append(ev, payload)
        publisher.wake()
        wait_until(lambda: publisher.failures >= 2)  # tries, fails fast, backs off, tries again
        assert [e.payload for e in store.unpublished()] == [p for _, p in events[2:]]

        broker.start()
        sub.wait_for(lambda m: len(_first_seen(m)) >= len(events), timeout=20)
        wait_until(lambda: store.unpublished() == [])
        assert publisher.stop(5)
    assert _first_seen(sub.messages) == [p for _, p in events]
    store.close()


def _first_seen(messages: list[tuple[str, bytes, bool]]) -> list[dict[str, Any]]:
    """Payloads in arrival order without redeliveries (delivery is at least once)."""
    out: list[dict[str, Any]] = []
    for _, raw, _ in messages:
        payload = json.loads(raw)
        if payload not in out:
            out.append(payload)
    return out


CHILD = """
import sys, time
from stream_detector.config import MqttConfig
from stream_detector.errors import ConfigError
from stream_detector.outputs import MqttSink
sink = MqttSink(MqttConfig(port=int(sys.argv[1]), topic_prefix=sys.argv[2], client_id="sd-child"),
                ["door"])
sink.start()
time.sleep(60)
"""


def test_last_will_says_offline_when_daemon_is_killed(broker: Broker) -> None:
    with subscribed(broker.port, f"{PREFIX}/available") as sub:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(broker.port), PREFIX], cwd=ROOT)
        try:
            sub.wait_for(lambda m: any(p == b"online" for _, p, _ in m))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            msgs = sub.wait_for(lambda m: m[-1][1] == b"offline", timeout=5)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert [p for _, p, _ in msgs] == [b"online", b"offline"]


HOST = """
import sys, time
from stream_detector.config import MqttConfig
from stream_detector.outputs import MqttSink
sink = MqttSink(MqttConfig(port=int(sys.argv[1]), homeassistant_prefix="homeassistant"), ["front"],
                node=sys.argv[2])
sink.start()
while not sink.connected:
    time.sleep(0.05)
sink.anomaly_state("front", False)
sink.score("front", 1.0)
time.sleep(60)
"""


def test_two_hosts_with_the_default_config_share_no_topic_id_or_availability(
        broker: Broker) -> None:
    """Same camera name, default [mqtt] but the port: each host its own namespace; host-a killed
    -9 leaves host-b online."""
    sinks = [MqttSink(MqttConfig(port=broker.port, homeassistant_prefix="homeassistant"),
                      ["front"], node=node) for node in ("host-a", "host-b")]
    client_ids = {s._client._client_id for s in sinks}
    assert client_ids == {b"stream-detector-host-a", b"stream-detector-host-b"}
    ids = [{c["unique_id"] for c in s.discovery_configs().values()} for s in sinks]
    devices = [{tuple(c["device"]["identifiers"]) for c in s.discovery_configs().values()}
               for s in sinks]
    assert not ids[0] & ids[1] and not devices[0] & devices[1]
    assert not set(sinks[0].discovery_configs()) & set(sinks[1].discovery_configs())
    children = []
    with subscribed(broker.port, "#") as sub:
        try:
            for node in ("host-a", "host-b"):
                children.append(subprocess.Popen([sys.executable, "-c", HOST, str(broker.port),
                                                  node], cwd=ROOT))
            for node in ("host-a", "host-b"):
                sub.wait_for(lambda m, n=node: (f"stream-detector/{n}/front/score", b"1.0000")
                             in [(t, p) for t, p, _ in m], timeout=20)
            os.kill(children[0].pid, signal.SIGKILL)
            children[0].wait(10)
            sub.wait_for(lambda m: ("stream-detector/host-a/available", b"offline")
                         in [(t, p) for t, p, _ in m])
            time.sleep(0.5)
            with subscribed(broker.port, "stream-detector/+/available") as late:  # retained
                states = dict((t, p) for t, p, _ in late.wait_for(lambda m: len(m) >= 2))
            online_b = sub.on("stream-detector/host-b/available")
        finally:
            for child in children:
                child.kill()
                child.wait(10)
    by_host: dict[str, set[str]] = {"host-a": set(), "host-b": set()}
    for topic, _, _ in sub.messages:
        owners = [h for h in by_host if h in topic]
        assert len(owners) == 1, f"{topic} names no host, or both"
        by_host[owners[0]].add(topic.replace(owners[0], "HOST"))
    assert by_host["host-a"] == by_host["host-b"]  # the same layout, apart
    assert "stream-detector/HOST/available" in by_host["host-a"]
    assert "homeassistant/binary_sensor/stream-detector_HOST/front_anomaly/config" in by_host["host-b"]
    assert online_b == [b"online"]  # host-a's Last Will did not touch it
    assert states == {"stream-detector/host-a/available": b"offline",
                      "stream-detector/host-b/available": b"online"}
