"""Faults against the real daemon, each test with its own daemon process: SIGKILL mid-event and a
restart (real mosquitto), SIGKILL with an ffmpeg reader running, a locked database and a camera
that cannot be scored (real Prometheus and its alert rules), a wedged scorer (watchdog, /healthz,
alert), a frozen RTSP stream, and Home Assistant discovery for a camera added by SIGHUP.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, NotifySocket, stored_events, write_clip, write_config
from mqtt_broker import Broker, Message, free_port, running_broker, subscribed
from prom_helpers import Prometheus, alert_rules, start_prometheus, wait_for, wait_for_scrapes
from rtsp_helpers import RtspServer, require_ffmpeg, require_gi_python

from stream_detector.capture import Injection
from stream_detector.config import host_node_id

pytestmark = pytest.mark.integration

PREFIX = "sd-faults"
INJECTED = Injection(40, 80)  # the object crosses frames 40-79 (4.0-8.0 s) of a 120-frame clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, vtest: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {"injected": write_clip(vtest, d / "injected.avi", 400, 120, injection=INJECTED),
            "plain": write_clip(vtest, d / "plain.avi", 400, 60),
            "wide": write_clip(vtest, d / "wide.avi", 0, 30, size=(320, 180))}


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    with running_broker(tmp_path / "broker") as b:
        yield b


def events_of(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t, raw, _ in messages:
        if t == f"{PREFIX}/events" and (p := json.loads(raw)) not in out:
            out.append(p)
    return out


def retained(port: int, topic: str) -> bytes:
    with subscribed(port, topic) as late:
        return late.wait_for(lambda m: bool(m))[0][1]


def ffmpeg_children(pid: int) -> list[int]:
    """Pids of `pid`'s children running ffmpeg, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:]
        if comm == "ffmpeg" and int(fields.split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopted it, if anyone does)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def test_sigkill_leaves_no_ffmpeg_reader_behind_and_a_restart_reads_again(
        tmp_path: Path, clips: dict[str, Path]) -> None:
    require_ffmpeg()
    doc: dict[str, Any] = {
        "cameras": {"door": {"source": str(clips["plain"]), "loop": True, "capture": "ffmpeg"}},
        "metrics": {"port": free_port()}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    for name in ("first", "second"):
        daemon = DaemonProcess(config, doc["metrics"]["port"], tmp_path, name=name)
        try:
            daemon.wait_metric("stream_detector_stream_up", lambda v: v == 1, 60, camera="door")
            daemon.wait_metric("stream_detector_recorder_up", lambda v: v == 1, 30, camera="door")
            readers = ffmpeg_children(daemon.proc.pid)
            # Per camera one ffmpeg reading and one recording for clips, none left from before.
            assert len(readers) == 2, readers
            daemon.signal(signal.SIGKILL)
            daemon.proc.wait(10)
            # Nobody closes the children: each must notice by itself that its reader is gone (the
            # recorder at its next segment, whose name it writes into the daemon's pipe).
            wait_for(lambda: not any(running(p) for p in readers), 15,
                     "the killed daemon's ffmpeg processes to exit")
        finally:
            daemon.close()


def test_sigkill_mid_event_then_restart_ends_the_event_and_clears_the_anomaly(
        tmp_path: Path, broker: Broker, clips: dict[str, Path]) -> None:
    doc: dict[str, Any] = {
        "cameras": {"door": {"source": str(clips["injected"]), "loop": True, "min_duration": 0.3,
                             "cooldown": 600.0}},  # once started, the event stays open
        "mqtt": {"port": broker.port, "topic_prefix": PREFIX, "client_id": "sd-faults"},
        "metrics": {"port": free_port()}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    with subscribed(broker.port, f"{PREFIX}/#") as sub:
        first = DaemonProcess(config, doc["metrics"]["port"], tmp_path, name="first")
        try:
            msgs = sub.wait_for(lambda m: any(p["type"] == "new" for p in events_of(m)), timeout=60)
            event_id = events_of(msgs)[0]["after"]["id"]
            sub.wait_for(lambda m: (f"{PREFIX}/door/anomaly", b"ON", False) in m)
            first.signal(signal.SIGKILL)  # what the watchdog or the OOM killer does
            first.proc.wait(10)
        finally:
            first.close()
        assert retained(broker.port, f"{PREFIX}/door/anomaly") == b"ON"  # the state the bug left
        doc["cameras"]["door"]["source"] = str(clips["plain"])  # no anomaly in the scene any more
        write_config(config, doc)
        second = DaemonProcess(config, doc["metrics"]["port"], tmp_path, name="second")
        try:
            msgs = sub.wait_for(lambda m: any(p["type"] == "end" for p in events_of(m)), timeout=60)
            end = [p for p in events_of(msgs) if p["type"] == "end"][0]
            assert end["after"]["id"] == event_id and end["after"]["end_reason"] == "restart"
            assert end["before"]["id"] == event_id and end["after"]["end_time"] is not None
            sub.wait_for(lambda m: [p for t, p, _ in m if t == f"{PREFIX}/door/anomaly"][-1] == b"OFF")
            assert retained(broker.port, f"{PREFIX}/door/anomaly") == b"OFF"
            rows = [r for r in stored_events(config) if r["id"] == event_id]
            assert [r["type"] for r in rows] == ["start", "end"], rows
            wait_for(lambda: all(r["published"] for r in stored_events(config)), 20,
                     "the restart's end to be marked published")
            assert "left open by the previous run" in second.log()
            rc, _ = second.stop(timeout=15)
            assert rc == 0
        finally:
            second.close()


def test_a_locked_database_and_an_unscorable_camera_fire_their_alerts_and_scoring_goes_on(
        tmp_path: Path, clips: dict[str, Path]) -> None:
    """Without [mqtt] no MQTT series exist (so no MQTT alert); a database locked by another process
    turns store_writable to 0 and StreamDetectorStoreFailing pending while scoring keeps pace; a 16:9
    camera the 4:3 model cannot score fires StreamDetectorCameraNotScored."""
    port = free_port()
    doc = {"cameras": {"door": {"source": str(clips["injected"]), "loop": True, "min_duration": 0.3,
                                "cooldown": 1.0, "update_interval": 1.0, "snapshot": False},
                       "wide": {"source": str(clips["wide"]), "loop": True}},
           "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    daemon = DaemonProcess(config, port, tmp_path)
    (tmp_path / "prometheus").mkdir()
    prom: Prometheus | None = None
    try:
        daemon.wait_up()
        prom = start_prometheus(port, tmp_path / "prometheus")
        samples = daemon.metrics()
        assert samples is not None and not [n for n, _ in samples if "mqtt" in n]
        assert daemon.value("stream_detector_store_writable") == 1
        db = sqlite3.connect(tmp_path / "store" / "events.sqlite", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            scored = daemon.value("stream_detector_frames_scored_total", camera="door") or 0
            read = daemon.value("stream_detector_frames_read_total", camera="door") or 0
            daemon.wait_metric("stream_detector_store_writable", lambda v: v == 0, 30)
            wait_for(lambda: _alert(prom, "StreamDetectorStoreFailing"), 20,  # type: ignore[arg-type]
                     "StreamDetectorStoreFailing to be pending")
            time.sleep(2)  # scoring keeps pace while the store is locked: nothing waits on it
            now_read = daemon.value("stream_detector_frames_read_total", camera="door") or 0
            now_scored = daemon.value("stream_detector_frames_scored_total", camera="door") or 0
            assert now_scored - scored >= 0.8 * (now_read - read) > 0
            assert daemon.value("stream_detector_frames_dropped_total", camera="door") == 0
            assert (daemon.value("stream_detector_store_held_events") or 0) >= 1
        finally:
            db.execute("ROLLBACK")
            db.close()
        daemon.wait_metric("stream_detector_store_writable", lambda v: v == 1, 30)
        daemon.wait_metric("stream_detector_outbox_backlog", lambda v: v == 0, 30)
        wait_for(lambda: _alert(prom, "StreamDetectorCameraNotScored", "wide"), 30,  # type: ignore[arg-type]
                 "StreamDetectorCameraNotScored to be pending for wide")
        assert not _alert(prom, "StreamDetectorCameraNotScored", "door")
        assert "StreamDetectorMqttDisconnected" in alert_rules(prom)
        assert not _alert(prom, "StreamDetectorMqttDisconnected")
        assert daemon.stop(timeout=15)[0] == 0
    finally:
        if prom is not None:
            prom.stop()
        daemon.close()


def _alert(prom: Prometheus, name: str, camera: str | None = None) -> str | None:
    """The alert's state ("pending" or "firing") for `camera`, or None when it is inactive."""
    for a in prom.api("alerts")["alerts"]:
        if a["labels"]["alertname"] == name and camera in (None, a["labels"].get("camera")):
            return str(a["state"])
    return None


def test_a_wedged_scorer_stops_the_watchdog_fails_healthz_and_fires_the_alert(
        tmp_path: Path, clips: dict[str, Path]) -> None:
    port = free_port()
    doc = {"cameras": {"door": {"source": str(clips["plain"]), "loop": True}},
           "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    main = [str(ROOT / "tests" / "integration" / "stalling_daemon.py")]
    with NotifySocket(tmp_path / "notify.sock") as notify:
        daemon = DaemonProcess(config, port, tmp_path, env={"NOTIFY_SOCKET": str(notify.path)},
                               main=main)
        (tmp_path / "prometheus").mkdir()
        prom: Prometheus | None = None
        try:
            daemon.wait_up()
            prom = start_prometheus(port, tmp_path / "prometheus")
            notify.wait_for("WATCHDOG=1", count=2, timeout=30)
            daemon.wait_metric("stream_detector_frames_scored_total", lambda v: v > 0, 30, camera="door")
            wait_for(lambda: daemon.get("/healthz")[0] == 503, 40, "/healthz to answer 503")
            body = json.loads(daemon.get("/healthz")[1])
            assert body["stale"] == ["inference"], body
            pings = notify.messages.count("WATCHDOG=1")
            time.sleep(2)
            assert notify.messages.count("WATCHDOG=1") == pings  # systemd would now restart it
            daemon.wait_log("threads stalled or dead")
            wait_for(lambda: _alert(prom, "StreamDetectorWorkerStalled"), 20,  # type: ignore[arg-type]
                     "StreamDetectorWorkerStalled to be pending")
            assert daemon.value("stream_detector_thread_heartbeat_age_seconds", thread="inference") > 15  # type: ignore[operator]
        finally:
            if prom is not None:
                prom.stop()
            daemon.close()  # SIGKILL: the wedged thread would not let it stop


def test_a_frozen_stream_reads_0_fps_and_removing_it_does_not_stall_the_others(
        tmp_path: Path, vtest: Path, clips: dict[str, Path]) -> None:
    """capture_fps falls to 0 while a stream is frozen (not yet stale); a SIGHUP that removes the
    frozen camera waits for its capture thread, but the other camera is scored all along."""
    require_gi_python()
    rtsp = RtspServer(vtest, tmp_path / "rtsp.log")
    port = free_port()
    doc: dict[str, Any] = {
        "cameras": {"street": {"source": rtsp.url, "stale_after": 60.0},
                    "door": {"source": str(clips["plain"]), "loop": True}},
        "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    rtsp.start()
    daemon = DaemonProcess(config, port, tmp_path)
    try:
        daemon.wait_metric("stream_detector_capture_fps", lambda v: v > 5, 60, camera="street")
        rtsp.signal(signal.SIGSTOP)  # frozen: the connection stays open, no frame comes
        daemon.wait_metric("stream_detector_capture_fps", lambda v: v == 0, 10, camera="street")
        assert daemon.value("stream_detector_stream_up", camera="street") == 1  # not yet stale

        del doc["cameras"]["street"]
        write_config(config, doc)
        daemon.signal(signal.SIGHUP)  # joining street's hung capture takes about a second
        samples: list[tuple[float, float]] = []
        while not daemon.log_lines("reload: 1 camera(s) running"):
            samples.append((time.monotonic(), daemon.value(
                "stream_detector_frames_scored_total", camera="door") or 0))
            assert samples[-1][0] - samples[0][0] < 30, "reload did not finish"
            time.sleep(0.1)
        changes = [t for (t, v), (_, prev) in zip(samples[1:], samples) if v != prev]
        gaps = [b - a for a, b in zip([samples[0][0], *changes], [*changes, samples[-1][0]])]
        assert max(gaps) < 0.9, gaps  # door was scored all along: the reload holds no shared lock
    finally:
        daemon.close()
        rtsp.kill()


def test_sighup_announces_added_cameras_to_home_assistant_and_clears_removed_ones(
        tmp_path: Path, broker: Broker, clips: dict[str, Path]) -> None:
    port = free_port()
    doc: dict[str, Any] = {
        "cameras": {"door": {"source": str(clips["plain"]), "loop": True}},
        "mqtt": {"port": broker.port, "topic_prefix": PREFIX, "homeassistant_prefix": "ha"},
        "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}}
    config = write_config(tmp_path / "config.toml", doc)
    with subscribed(broker.port, "ha/#") as sub:
        daemon = DaemonProcess(config, port, tmp_path)
        try:
            daemon.wait_metric("stream_detector_mqtt_connected", lambda v: v == 1, 60)
            sub.wait_for(lambda m: any("door_anomaly" in t for t, _, _ in m))
            with subscribed(broker.port, f"{PREFIX}/door/#") as before:  # set, so clearing counts
                before.wait_for(lambda m: (f"{PREFIX}/door/tampered", b"OFF", True) in m)
            doc["cameras"] = {"yard": {"source": str(clips["plain"]), "loop": True}}
            write_config(config, doc)
            daemon.signal(signal.SIGHUP)  # yard added, door removed
            door = f"ha/binary_sensor/{PREFIX}/door_anomaly/config"
            msgs = sub.wait_for(lambda m: any("yard_anomaly" in t for t, _, _ in m)
                                and (door, b"", False) in m, timeout=30)
            with subscribed(broker.port, f"{PREFIX}/#") as late:  # what a newcomer is told
                retained = dict((t, p) for t, p, r in late.wait_for(
                    lambda m: (f"{PREFIX}/yard/anomaly", b"OFF", True) in m
                    and (f"{PREFIX}/yard/tampered", b"OFF", True) in m) if r)
        finally:
            daemon.close()
    assert f"{PREFIX}/door/anomaly" not in retained  # the removed camera's state was cleared
    assert f"{PREFIX}/door/tampered" not in retained
    configs = {t: json.loads(p) for t, p, _ in msgs if p}
    yard = configs[f"ha/binary_sensor/{PREFIX}/yard_anomaly/config"]
    assert yard["state_topic"] == f"{PREFIX}/yard/anomaly"
    assert yard["device"]["name"] == f"{PREFIX} on {host_node_id()}"


def test_an_idle_daemon_sleeps_instead_of_polling(tmp_path: Path) -> None:
    """The worker waits on the frame queues' condition: with no frame coming (a camera that is down)
    the daemon uses next to no CPU. Polling every 5 ms cost well over 1% of a core."""
    port = free_port()
    doc = {"cameras": {"down": {"source": f"rtsp://127.0.0.1:{free_port()}/none"}},
           "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}}
    daemon = DaemonProcess(write_config(tmp_path / "config.toml", doc), port, tmp_path)
    try:
        daemon.wait_up()
        daemon.wait_metric("stream_detector_stream_up", lambda v: v == 0, 30, camera="down")
        time.sleep(2)  # start-up is over; nothing scrapes during the measurement
        before, started = _cpu_seconds(daemon.proc.pid), time.monotonic()
        time.sleep(6)
        share = (_cpu_seconds(daemon.proc.pid) - before) / (time.monotonic() - started)
        assert share < 0.008, f"idle daemon used {share:.1%} of a core"
    finally:
        daemon.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
