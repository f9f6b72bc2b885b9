"""The real daemon end to end: `stream-detector run` as a child process with a real mosquitto, a real
Prometheus and a real RTSP server; SIGTERM, SIGKILL and SIGHUP; systemd's notify protocol; and bad
configs as one line naming the file and the key.

Every test starts its own broker and daemon (and RTSP server or Prometheus where it needs them), so
the tests run in any order and alone.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from daemon_helpers import (
    ROOT,
    DaemonProcess,
    NotifySocket,
    check_event_sequences,
    cli,
    stored_events,
    write_clip,
    write_config,
)
from mqtt_broker import (
    Broker,
    Message,
    Subscriber,
    free_port,
    payloads,
    running_broker,
    subscribed,
)
from prom_helpers import (
    DASHBOARD,
    PROM_DIR,
    Prometheus,
    alert_rules,
    dashboard_queries,
    split_alert,
    start_prometheus,
    wait_for,
    wait_for_scrapes,
)
from rtsp_helpers import RtspServer, require_gi_python

from stream_detector.capture import Injection

pytestmark = pytest.mark.integration

PREFIX = "sd-daemon"
LIVE_PREFIX = "sd-live"
# A clip scored as fast as the model allows: the queue holds all of it, so no frame is dropped and
# the events do not depend on the machine's speed; short hysteresis so the event ends in the clip.
FAST_CLIP = {"realtime": False, "queue_size": 1024, "min_duration": 0.3, "cooldown": 1.0,
             "update_interval": 1.0}
INJECTED = Injection(40, 80)  # the object crosses frames 40-79 (4.0-8.0 s) of a 120-frame clip


def yard_flow(msgs: list[Message]) -> list[str]:
    """Camera yard's event types (new/end, without redeliveries) and anomaly states, in arrival order."""
    flow: list[str] = []
    for topic, raw, _ in msgs:
        if topic == f"{PREFIX}/events" and json.loads(raw)["after"]["camera"] == "yard":
            kind = json.loads(raw)["type"]
            if kind != "update" and kind not in flow:  # at least once: skip redeliveries
                flow.append(kind)
        elif topic == f"{PREFIX}/yard/anomaly" and (not flow or flow[-1] != raw.decode()):
            flow.append(raw.decode())
    return flow


def ended(camera: str) -> Callable[[list[Message]], bool]:
    """A Subscriber.wait_for condition: an "end" event of `camera` arrived."""
    def check(messages: list[Message]) -> bool:
        return any(p["type"] == "end" and p["after"]["camera"] == camera
                   for p in payloads(messages, f"{PREFIX}/events"))
    return check


def published_rows(config: Path, camera: str) -> list[dict[str, Any]]:
    """The camera's stored events once all are marked published (just after the broker's ack)."""
    def rows() -> list[dict[str, Any]] | None:
        found = [r for r in stored_events(config) if r["camera"] == camera]
        return found if found and all(r["published"] for r in found) else None
    return wait_for(rows, 20, f"the store to mark {camera}'s events published", interval=0.5)


@pytest.fixture()
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture(scope="module")
def injected_clip(tmp_path_factory: pytest.TempPathFactory, vtest: Path) -> Path:
    return write_clip(vtest, tmp_path_factory.mktemp("clips") / "injected.avi", first=400, count=120,
                      injection=INJECTED)


# --- a daemon publishing to MQTT --------------------------------------------------------------------


@dataclass
class MqttDaemon:
    daemon: DaemonProcess
    config: Path
    doc: dict[str, Any]
    sub: Subscriber  # everything under PREFIX/, subscribed before the daemon started
    notify: NotifySocket


@pytest.fixture()
def mqtt_daemon(tmp_path_factory: pytest.TempPathFactory, broker: Broker,
                injected_clip: Path) -> Iterator[MqttDaemon]:
    tmp = tmp_path_factory.mktemp("mqtt-daemon")
    doc = {"cameras": {"door": {"source": str(injected_clip), **FAST_CLIP}},
           "mqtt": {"port": broker.port, "topic_prefix": PREFIX, "client_id": "sd-daemon",
                    "score_interval": 0.2},
           "metrics": {"port": free_port()},
           "storage": {"path": str(tmp / "store")}}
    config = write_config(tmp / "config.toml", doc)
    with subscribed(broker.port, f"{PREFIX}/#") as sub, NotifySocket(tmp / "notify.sock") as notify:
        daemon = DaemonProcess(config, doc["metrics"]["port"], tmp,
                               env={"NOTIFY_SOCKET": str(notify.path)})
        try:
            daemon.wait_up()
            yield MqttDaemon(daemon, config, doc, sub, notify)
        finally:
            daemon.close()


def test_notify_ready_and_watchdog(mqtt_daemon: MqttDaemon) -> None:
    messages = mqtt_daemon.notify.wait_for("WATCHDOG=1", count=2, timeout=30)
    assert messages[0] == "READY=1", messages  # READY before the first watchdog ping
    mqtt_daemon.daemon.assert_running()


def test_event_reaches_mqtt_stdout_and_the_store(mqtt_daemon: MqttDaemon, broker: Broker) -> None:
    d = mqtt_daemon
    msgs = d.sub.wait_for(ended("door"), timeout=60)
    events = payloads(msgs, f"{PREFIX}/events")
    sequences = check_event_sequences(events)
    first = sequences[0]
    assert 4.0 <= first[0]["after"]["stream_start"] < 8.0, first[0]  # while the object crosses
    assert [e["type"] for e in first].count("update") >= 1  # it lasts several update intervals
    assert first[-1]["after"]["stream_end"] > first[0]["after"]["stream_start"]
    assert all(e["after"]["camera"] == "door" for e in events)

    # Per event: the event, then the anomaly state, then the snapshot: wait for the last of them.
    msgs = d.sub.wait_for(lambda m: sum(t == f"{PREFIX}/door/snapshot" for t, _, _ in m)
                          >= 2 * len(sequences))
    topics = [t for t, _, _ in msgs]
    assert topics[0] == f"{PREFIX}/available" and msgs[0][1] == b"online"
    # OFF at start-up (nothing is open after a start), then ON and OFF around each event.
    assert d.sub.on(f"{PREFIX}/door/anomaly") == [b"OFF"] + [b"ON", b"OFF"] * len(sequences)
    scores = d.sub.on(f"{PREFIX}/door/score")
    values = [float(s) for s in scores]  # baseline units: 0 ~ normal, a little below 0 is normal too
    assert values and all(math.isfinite(v) for v in values) and max(values) > 1.0
    snapshots = d.sub.on(f"{PREFIX}/door/snapshot")
    assert len(snapshots) == 2 * len(sequences)  # at start and at end
    image = cv2.imdecode(np.frombuffer(snapshots[-1], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (576, 768, 3)

    with subscribed(broker.port, f"{PREFIX}/#") as late:  # joins now: sees what is retained
        kept = {f"{PREFIX}/{t}" for t in ("available", "door/anomaly", "door/tampered",
                                            "door/snapshot")}  # all four: their order varies
        retained = {t: p for t, p, r in late.wait_for(
            lambda m: kept <= {t for t, _, r in m if r}) if r}
    assert retained[f"{PREFIX}/available"] == b"online"
    assert retained[f"{PREFIX}/door/anomaly"] == b"OFF"
    assert retained[f"{PREFIX}/door/tampered"] == b"OFF"
    assert retained[f"{PREFIX}/door/snapshot"] == snapshots[-1]

    assert d.daemon.events_on_stdout() == events  # JSON lines, in the same order
    rows = published_rows(d.config, "door")
    kinds = {"new": "start", "update": "update", "end": "end"}
    assert [(r["id"], r["type"]) for r in rows] == [(e["after"]["id"], kinds[e["type"]]) for e in events]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert rows[-1]["snapshot"] and Path(rows[-1]["snapshot"]).is_file()
    assert d.daemon.value("stream_detector_events_total", camera="door", type="end") == len(sequences)


def test_broker_outage_events_are_stored_then_delivered_in_order(mqtt_daemon: MqttDaemon,
                                                                 broker: Broker,
                                                                 injected_clip: Path) -> None:
    d = mqtt_daemon
    # A persistent session: the broker keeps what arrives for it while it reconnects.
    with subscribed(broker.port, f"{PREFIX}/#", client_id="sd-watcher", persistent=True) as watcher:
        broker.stop()
        try:
            d.daemon.wait_metric("stream_detector_mqtt_connected", lambda v: v == 0, 10)
            d.doc["cameras"]["yard"] = {"source": str(injected_clip), **FAST_CLIP}
            write_config(d.config, d.doc)
            d.daemon.signal(signal.SIGHUP)  # a new camera playing the clip: an event while offline
            d.daemon.wait_metric("stream_detector_events_total", lambda v: v >= 1, 60,
                                 camera="yard", type="end")
            held = [r for r in stored_events(d.config) if r["camera"] == "yard"]
            assert held and held[0]["type"] == "start" and held[-1]["type"] == "end", held
            assert not any(r["published"] for r in held)  # stored first, waiting for the broker
            assert (d.daemon.value("stream_detector_mqtt_publish_failures_total") or 0) > 0
        finally:
            broker.start()  # the later tests need it, whatever happened here
        # One output path: after the outage each event is followed by its state, never overtaken.
        msgs = watcher.wait_for(lambda m: yard_flow(m)[-4:] == ["new", "ON", "end", "OFF"], timeout=60)
    received = payloads(msgs, f"{PREFIX}/events")
    emitted = d.daemon.events_on_stdout()  # written as each event was stored
    assert received == [e for e in emitted if e in received]  # in the order they were stored
    on_stdout = [e for e in emitted if e["after"]["camera"] == "yard"]
    assert [e for e in received if e["after"]["camera"] == "yard"] == on_stdout  # none missing
    check_event_sequences(on_stdout)
    rows = published_rows(d.config, "yard")
    assert [r["id"] for r in rows] == [e["after"]["id"] for e in on_stdout]
    d.sub.wait_for(lambda m: any(t == f"{PREFIX}/yard/anomaly" and p == b"OFF" for t, p, _ in m))


def test_sigterm_exits_0_and_says_offline(mqtt_daemon: MqttDaemon, broker: Broker) -> None:
    d = mqtt_daemon
    d.daemon.wait_metric("stream_detector_mqtt_connected", lambda v: v == 1, 30)
    with subscribed(broker.port, f"{PREFIX}/available") as sub:
        sub.wait_for(lambda m: bool(m) and m[-1][1] == b"online")
        rc, seconds = d.daemon.stop(timeout=10)
        assert rc == 0 and seconds < 5, (rc, seconds, d.daemon.log()[-2000:])
        sub.wait_for(lambda m: m[-1][1] == b"offline")
    with subscribed(broker.port, f"{PREFIX}/available") as late:
        assert late.wait_for(lambda m: len(m) >= 1)[0] == (f"{PREFIX}/available", b"offline", True)
    notes = d.notify.wait_for("STOPPING=1")
    # READY, watchdog pings, RELOADING then READY again for each SIGHUP (the outage test's), STOPPING.
    assert notes[0] == "READY=1" and notes[-1] == "STOPPING=1", notes
    assert notes.count("READY=1") == 1 + notes.count("RELOADING=1"), notes
    assert "Traceback" not in d.daemon.log()


# --- a daemon on live sources, scraped by Prometheus ------------------------------------------------


@dataclass
class LiveDaemon:
    daemon: DaemonProcess
    config: Path
    doc: dict[str, Any]
    rtsp: RtspServer
    workdir: Path
    started: list[Prometheus]

    def prometheus(self) -> Prometheus:
        """A Prometheus scraping this daemon, started on demand (stopped with the daemon)."""
        (self.workdir / "prometheus").mkdir()
        self.started.append(start_prometheus(self.daemon.port, self.workdir / "prometheus"))
        return self.started[-1]


@pytest.fixture()
def live(tmp_path_factory: pytest.TempPathFactory, broker: Broker, vtest: Path) -> Iterator[LiveDaemon]:
    """An RTSP camera ("street") and a 16:9 clip the 4:3 model cannot score ("wide")."""
    require_gi_python()
    tmp = tmp_path_factory.mktemp("live-daemon")
    wide = write_clip(vtest, tmp / "wide.avi", first=0, count=30, size=(320, 180))
    rtsp = RtspServer(vtest, tmp / "rtsp_server.log")
    port = free_port()
    doc = {"cameras": {"street": {"source": rtsp.url, "stale_after": 2.0},
                       "wide": {"source": str(wide), "loop": True}},
           "mqtt": {"port": broker.port, "topic_prefix": LIVE_PREFIX, "client_id": "sd-live"},
           "metrics": {"port": port, "ready_after": 5.0},
           "storage": {"path": str(tmp / "store")}}
    config = write_config(tmp / "config.toml", doc)
    daemon = DaemonProcess(config, port, tmp)  # starts while the server decodes its clip
    started: list[Prometheus] = []
    try:
        rtsp.start()
        daemon.wait_up()
        # The camera opens through its own ffmpeg process (probe, then read): seconds, not instant.
        daemon.wait_metric("stream_detector_stream_up", lambda v: v == 1, 40, camera="street")
        yield LiveDaemon(daemon, config, doc, rtsp, tmp, started)
    finally:
        for prometheus in started:
            prometheus.stop()
        daemon.close()
        rtsp.kill()


def test_wrong_resolution_camera_logs_one_error_and_others_keep_scoring(live: LiveDaemon) -> None:
    d = live.daemon
    d.wait_metric("stream_detector_frames_scored_total", lambda v: v >= 20, 60, camera="street")
    d.wait_metric("stream_detector_frames_read_total", lambda v: v >= 35, 30, camera="wide")  # looped
    assert d.value("stream_detector_model_loaded", camera="wide") == 0
    assert d.value("stream_detector_frames_scored_total", camera="wide") == 0
    assert d.value("stream_detector_stream_up", camera="street") == 1
    errors_logged = d.log_lines(" ERROR ")
    assert len(errors_logged) == 1, errors_logged
    assert "camera wide" in errors_logged[0] and "320x180 does not fit" in errors_logged[0]

    assert d.get("/healthz")[0] == 200
    status, body = d.get("/readyz")  # not ready: one camera cannot be scored
    detail = json.loads(body)["cameras"]
    assert status == 503 and detail["wide"]["model_loaded"] is False and detail["street"]["ready"]


def test_prometheus_finds_every_dashboard_and_alert_series(live: LiveDaemon) -> None:
    prom = live.prometheus()
    wait_for_scrapes(prom)
    queries = dashboard_queries(DASHBOARD)

    def empty() -> list[str]:
        return [f"{title}: {expr}" for title, expr in queries if not prom.query(expr)]

    # Series that appeared after the first scrapes (the first model call) need two samples for rate().
    deadline = time.monotonic() + 15
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, "dashboard queries without series:\n" + "\n".join(missing)
    rules = alert_rules(prom)
    assert len(rules) == (PROM_DIR / "alerts.yml").read_text().count("- alert:")
    for name, rule in rules.items():
        query, _, _ = split_alert(str(rule["query"]))
        assert prom.query(query), f"{name}: {query!r} returns no series"
    up = {r["metric"]["camera"]: float(r["value"][1])
          for r in prom.query("stream_detector_stream_up")}
    assert up["street"] == 1
    scored = prom.query('stream_detector_frames_scored_total{camera="street"}')
    assert float(scored[0]["value"][1]) > 0


def test_rtsp_camera_reconnects_without_restarting_the_daemon(live: LiveDaemon) -> None:
    d = live.daemon
    reconnects = d.value("stream_detector_reconnects_total", camera="street") or 0
    live.rtsp.kill()
    d.wait_metric("stream_detector_stream_up", lambda v: v == 0, 2.0 + 5, camera="street")
    d.wait_log("camera street: stream lost")
    live.rtsp.start()
    d.wait_metric("stream_detector_stream_up", lambda v: v == 1, 40, camera="street")
    assert (d.value("stream_detector_reconnects_total", camera="street") or 0) > reconnects
    scored = d.value("stream_detector_frames_scored_total", camera="street") or 0
    d.wait_metric("stream_detector_frames_scored_total", lambda v: v >= scored + 10, 20,
                  camera="street")
    assert len(d.log_lines("camera street: stream up")) == 2


def test_sighup_adds_and_removes_cameras(live: LiveDaemon) -> None:
    d = live.daemon
    scored = d.value("stream_detector_frames_scored_total", camera="street") or 0
    del live.doc["cameras"]["wide"]
    live.doc["cameras"]["demo"] = {"source": "demo"}  # the built-in demo stream
    write_config(live.config, live.doc)
    d.signal(signal.SIGHUP)
    d.wait_metric("stream_detector_frames_scored_total", lambda v: v >= 10, 30, camera="demo")
    samples = d.metrics()
    assert samples is not None
    assert not [name for name, labels in samples if ("camera", "wide") in labels]  # all gone
    assert d.value("stream_detector_frames_scored_total", camera="street") > scored  # type: ignore[operator]
    d.wait_log("reload: 2 camera(s) running")
    wait_for(lambda: d.get("/readyz")[0] == 200, 10, "/readyz to answer 200")
    assert d.get("/healthz")[0] == 200


def test_sighup_with_a_bad_config_keeps_running(live: LiveDaemon) -> None:
    d = live.daemon
    good = live.config.read_text()
    live.config.write_text(good + "[cameras.broken\n")
    d.signal(signal.SIGHUP)
    line = d.wait_log("ERROR", "reload failed, keeping the running config")[-1]
    assert f"{live.config}: invalid TOML" in line
    live.config.write_text(good + '[cameras.extra]\nsource = "demo"\nmodel = "/nonexistent-model"\n')
    d.signal(signal.SIGHUP)
    line = d.wait_log("ERROR", "reload failed", count=2)[-1]
    assert f"{live.config}: cameras.extra.model: /nonexistent-model" in line
    for camera in [c for c in live.doc["cameras"] if c != "wide"]:  # those scored keep going
        scored = d.value("stream_detector_frames_scored_total", camera=camera) or 0
        d.wait_metric("stream_detector_frames_scored_total", lambda v, s=scored: v > s + 5, 20,
                      camera=camera)
    assert d.value("stream_detector_frames_read_total", camera="extra") is None
    assert "Traceback" not in d.log()


def test_sigkill_leaves_offline_to_the_last_will(live: LiveDaemon, broker: Broker) -> None:
    d = live.daemon
    d.wait_metric("stream_detector_mqtt_connected", lambda v: v == 1, 30)
    with subscribed(broker.port, f"{LIVE_PREFIX}/available") as sub:
        sub.wait_for(lambda m: bool(m) and m[-1][1] == b"online")
        d.signal(signal.SIGKILL)
        d.proc.wait(10)
        msgs = sub.wait_for(lambda m: m[-1][1] == b"offline", timeout=10)
    assert [p for _, p, _ in msgs] == [b"online", b"offline"]


# --- configuration errors -----------------------------------------------------------------------------

# (config text, what follows "FILE: " in the error as a regex), one per case. CLIP names a readable
# clip, TMP a temporary folder. Every case also gets [storage] and [metrics] tables, so a config that
# wrongly passed would not touch anything outside the test's folder.
BAD_CONFIGS = [
    pytest.param('[cameras.door]\nsource = "CLIP"\nsourec = "CLIP"\n',
                 r"cameras\.door\.sourec: unknown key", id="unknown key"),
    pytest.param('[camera.door]\nsource = "CLIP"\n', r"camera: unknown key", id="unknown table"),
    pytest.param('[cameras.door]\nsource = "CLIP"\nfps_limit = "fast"\n',
                 r"cameras\.door\.fps_limit: expected a number", id="wrong type"),
    pytest.param('mqtt = "localhost"\n[cameras.door]\nsource = "CLIP"\n', r"mqtt: expected a table",
                 id="value instead of a table"),
    pytest.param('[cameras.door]\nsource = "CLIP"\nlow_threshold_ratio = 1.5\n',
                 r"cameras\.door\.low_threshold_ratio: must be in", id="out of range"),
    pytest.param('[cameras.door]\nsource = "CLIP"\n[mqtt]\nport = 70000\n', r"mqtt\.port: must be in",
                 id="port out of range"),
    pytest.param('device = "gpu"\n[cameras.door]\nsource = "CLIP"\n', r"device: must be",
                 id="unknown device"),
    pytest.param('[logging]\nlevel = "info"\n', r"cameras: configure at least one camera",
                 id="no cameras"),
    pytest.param('[cameras.door]\nsource = "CLIP"\nenabled = false\n', r"cameras: every camera is disabled",
                 id="every camera disabled"),
    pytest.param('[cameras."front door"]\nsource = "CLIP"\n', r"cameras\.front door: camera names",
                 id="bad camera name"),
    pytest.param('[cameras.door]\nrealtime = false\n', r"cameras\.door\.source: required",
                 id="missing source"),
    pytest.param('[cameras.door]\nsource = "CLIP"\nmodel = "TMP/no-model"\n',
                 r"cameras\.door\.model: TMP/no-model: model directory not found",
                 id="missing model directory"),
    pytest.param('[cameras.door]\nsource = "TMP/missing.avi"\n', r"cameras\.door\.source: TMP/missing\.avi: no such file",
                 id="missing file source"),
    pytest.param('[cameras.door\nsource = "CLIP"\n', r"invalid TOML .*line 1", id="TOML syntax error"),
    pytest.param('device = "cuda"\n[cameras.door]\nsource = "CLIP"\n', r"device: .*no CUDA device",
                 id="cuda without a GPU", marks=pytest.mark.skipif(
                     torch.cuda.is_available(), reason="this machine has a CUDA device")),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_naming_file_and_key(text: str, expected: str, injected_clip: Path,
                                                    tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    for old, new in (("CLIP", str(injected_clip)), ("TMP", str(tmp_path))):
        text, expected = text.replace(old, new), expected.replace(old, re.escape(new))
    cfg.write_text(text + f'[storage]\npath = "{tmp_path}/store"\n[metrics]\nport = 0\n')
    commands = {"check-config": ["check-config", str(cfg)], "run": ["run", "--config", str(cfg)]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "stream_detector", *args], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}  # both at once: each is mostly interpreter start-up
    try:
        results = {name: (p.communicate(timeout=60), p.returncode) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
    pattern = re.compile(re.escape(f"stream-detector: error: {cfg}: ") + expected)
    for name, ((out, err), rc) in results.items():
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and pattern.match(lines[0]), (name, rc, err)
        assert out == "", (name, out)
    assert not (tmp_path / "store").exists()  # refused before anything was opened


def test_check_config_accepts_the_example_config() -> None:
    """Its camera is an RTSP URL on a documentation address: network sources are not probed. Its
    password comes from the environment, as the example recommends."""
    done = cli("check-config", str(ROOT / "deploy" / "config.example.toml"),
               env={"FRONT_DOOR_PASSWORD": "s3cret"})
    assert done.returncode == 0, done.stderr
    assert "ok (1 camera(s): front_door)" in done.stdout
