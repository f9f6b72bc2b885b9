"""The in-process Daemon: /healthz on a wedged writer, a dead capture thread restarted, a port
taken after the check, cameras with and without a substream (events in scored pixels, snapshots
at the main stream's size, reloads), and a reload onto a tuned model.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import ScriptedScorer

from stream_detector.config import (
    DEFAULT_MODEL,
    parse_daemon_config,
)
from stream_detector.daemon import Daemon
from stream_detector.errors import ConfigError
from stream_detector.messages import (
    Event,
    Frame,
    FrameScore,
)
from stream_detector.outputs import (
    EventStore,
)


class BlockingStore(EventStore):
    """An event store whose append blocks until released: a wedged emitter."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, event: Event, payload: dict[str, Any], timeline: Any = None) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().append(event, payload, timeline)


class Always:
    """A scorer factory whose scorers say every frame is anomalous (an event starts at once)."""

    def __init__(self, model: Any, threshold: float, ignore: Any) -> None:
        self.inner = ScriptedScorer()

    def reset(self) -> None:
        pass

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        return [FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time, 1e6, 1e6,
                           False, np.zeros((2, 2)), None) for f in frames]


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_healthz_fails_when_the_emitter_is_wedged(tmp_path: Path, vtest: Path) -> None:
    cfg = parse_daemon_config({
        "cameras": {"door": {"source": str(vtest), "realtime": False, "min_duration": 0.1,
                             "snapshot": False}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    store = BlockingStore(tmp_path / "events.sqlite")
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Always, store=store, stall_after=1.0)
    daemon.start()
    try:
        assert healthz(daemon.metrics_port)[0] == 200
        assert store.entered.wait(30), "no event reached the store"
        deadline = time.monotonic() + 10
        while (answer := healthz(daemon.metrics_port))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = answer
        assert status == 503 and body["stale"] == ["emitter"], body
        assert daemon.liveness()[0] is False  # what the WATCHDOG=1 pings follow
        store.release.set()
        deadline = time.monotonic() + 10
        while healthz(daemon.metrics_port)[0] != 200:
            assert time.monotonic() < deadline, "did not become healthy again"
            time.sleep(0.2)
    finally:
        store.release.set()
        daemon.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_capture_thread_that_dies_is_restarted(tmp_path: Path, vtest: Path) -> None:
    """A bug that escapes the capture loop (here: its observer raises) ends that thread; the
    supervisor restarts it, counts it, and the camera is scored again."""
    cfg = parse_daemon_config({
        "cameras": {"door": {"source": str(vtest), "loop": True}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Always)
    daemon.start()
    try:
        capture = daemon._captures["door"][0]
        observer = capture.observer

        class Broken:
            def __getattr__(self, name: str) -> Any:
                if name == "frame_read":
                    raise RuntimeError("injected capture fault")
                return getattr(observer, name)

        capture.observer = Broken()  # type: ignore[assignment]
        capture.join(10)
        assert not capture.is_alive() and not capture.finished
        daemon.supervise()
        assert daemon._captures["door"][0] is not capture
        assert daemon.registry.get_sample_value("stream_detector_thread_errors_total",
                                                {"thread": "capture-door"}) == 1
        read = daemon.registry.get_sample_value("stream_detector_frames_read_total",
                                                {"camera": "door"}) or 0
        deadline = time.monotonic() + 10
        while (daemon.registry.get_sample_value("stream_detector_frames_read_total",
                                                {"camera": "door"}) or 0) < read + 5:
            assert time.monotonic() < deadline, "the restarted capture reads nothing"
            time.sleep(0.1)
    finally:
        daemon.stop()


def test_a_port_taken_after_the_check_stops_start_before_the_broker(tmp_path: Path) -> None:
    """The check and the bind are not atomic: start() listens first, so it fails unconnected."""
    import io

    from stream_detector.config import parse_daemon_config
    from stream_detector.daemon import Daemon

    with socket.create_server(("127.0.0.1", 0)) as broker, socket.create_server(("127.0.0.1", 0)) as busy:
        cfg = parse_daemon_config({"cameras": {"door": {"source": "demo"}},
                                   "mqtt": {"port": broker.getsockname()[1]},
                                   "metrics": {"port": busy.getsockname()[1]},
                                   "storage": {"path": str(tmp_path)}}, "c.toml")
        daemon = Daemon(cfg, io.StringIO())
        try:
            with pytest.raises(ConfigError, match=r"^c\.toml: metrics\.port: cannot listen on"):
                daemon.start()
        finally:
            daemon.store.close()
        broker.settimeout(0.3)
        with pytest.raises(TimeoutError):
            broker.accept()


class Boxed:
    """A scorer factory: every frame anomalous in the top-left quarter of the grid, the box computed
    like FrameScorer's (slicer.box_of with the scored frame's size), which it records."""

    sizes: set[tuple[int, int]] = set()

    def __init__(self, model: Any, threshold: float, ignore: Any) -> None:
        self.slicer = model.slicer
        rows, cols = self.slicer.grid
        self.mask = np.zeros((rows, cols), bool)
        self.mask[: rows // 2, : cols // 2] = True
        self.cells = np.where(self.mask, 1e6, 0.0).astype(np.float32)

    def reset(self) -> None:
        pass

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        out = []
        for f in frames:
            h, w = f.image.shape[:2]
            Boxed.sizes.add((w, h))
            out.append(FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time, 1e6,
                                  1e6, False, self.cells, self.slicer.box_of(self.mask, w, h)))
        return out


def run_daemon(tmp_path: Path, camera: dict[str, Any], seconds: float = 2.5
               ) -> tuple[list[dict[str, Any]], Daemon]:
    """Run one camera until an event has started and `seconds` passed; the stored "after"s."""
    cfg = parse_daemon_config({
        "cameras": {"door": {"realtime": True, "loop": True, "min_duration": 0.5,
                             "capture": "opencv", **camera}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    store = EventStore(tmp_path / "events.sqlite")
    Boxed.sizes = set()
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Boxed, store=store)
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while not store.query("door"):
            assert time.monotonic() < deadline, "no event started"
            time.sleep(0.1)
        time.sleep(seconds)
    finally:
        daemon.stop()
    reader = EventStore(tmp_path / "events.sqlite")
    try:
        return [{**e.payload["after"], "type": e.type} for e in reader.query("door")], daemon
    finally:
        reader.close()


def jpeg_size(path: str | None) -> tuple[int, int]:
    assert path, "no snapshot stored"
    image = cv2.imread(path)
    assert image is not None, path
    return image.shape[1], image.shape[0]


def test_a_camera_with_a_substream_scores_it_and_snapshots_the_main_stream(
        tmp_path: Path, vtest: Path, small: Path) -> None:
    afters, daemon = run_daemon(tmp_path, {"source": str(vtest), "detect_source": str(small)})
    assert Boxed.sizes == {(384, 288)}, "only the substream is scored"
    end = afters[-1]
    assert end["type"] == "end"
    slicer = daemon._models[next(iter(daemon._models))].slicer
    mask = np.zeros(slicer.grid, bool)
    mask[: slicer.grid[0] // 2, : slicer.grid[1] // 2] = True
    scored_box = slicer.box_of(mask, 384, 288)
    assert scored_box is not None
    assert end["box"] == scored_box.as_list(), "the event's box is in scored (detect_source) pixels"
    assert jpeg_size(end["snapshot"]) == (768, 576), "the snapshot shows the main stream"
    assert "capture-door/main" not in daemon.heartbeats.ages(), "the main stream stopped with the camera"
    value = daemon.registry.get_sample_value("stream_detector_snapshot_stream_up",
                                             {"camera": "door"})
    assert value is None, "its series goes with the camera"


def test_a_camera_without_a_substream_snapshots_what_it_scores(tmp_path: Path, small: Path) -> None:
    afters, daemon = run_daemon(tmp_path, {"source": str(small)}, seconds=1.0)
    assert Boxed.sizes == {(384, 288)}
    assert jpeg_size(afters[-1]["snapshot"]) == (384, 288)
    assert not daemon._main


def test_the_main_stream_reports_up_while_running_and_restarts_after_reload(
        tmp_path: Path, vtest: Path, small: Path) -> None:
    """Reload: a camera whose detect_source changes gets a new main-stream reader; the old ends."""
    camera = {"source": str(vtest), "detect_source": str(small), "realtime": True, "loop": True,
              "capture": "opencv"}
    cfg = parse_daemon_config({"cameras": {"door": camera}, "metrics": {"port": 0},
                               "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Boxed)
    daemon.start()

    def up() -> float | None:
        return daemon.registry.get_sample_value("stream_detector_snapshot_stream_up",
                                                {"camera": "door"})

    def wait(ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15
        while not ok():
            assert time.monotonic() < deadline
            time.sleep(0.1)

    try:
        wait(lambda: up() == 1.0)
        first = daemon._main["door"]
        daemon.reload(parse_daemon_config(
            {"cameras": {"door": {**camera, "detect_source": ""}}, "metrics": {"port": 0},
             "storage": {"path": str(tmp_path / "store")}}, "test.toml"))
        assert not first.loop.is_alive() and "door" not in daemon._main and up() is None
        daemon.reload(cfg)
        wait(lambda: up() == 1.0)
        assert daemon._main["door"] is not first
    finally:
        daemon.stop()


def test_a_reload_switches_a_camera_to_a_tuned_model_ending_its_open_event(
        tmp_path: Path, vtest: Path) -> None:
    """`tune` writes a new directory; pointing the camera at it and reloading restarts that
    camera on it: the event open on the old model ends and is stored, a new one starts on the new
    model, and the old directory is left as it was (rollback)."""
    tuned = tmp_path / "tuned"
    shutil.copytree(DEFAULT_MODEL, tuned)  # a stand-in for tune's output: another sealed dir
    before = {p.name: p.read_bytes() for p in DEFAULT_MODEL.iterdir() if p.is_file()}
    camera = {"source": str(vtest), "realtime": True, "loop": True, "model": str(DEFAULT_MODEL)}

    def config(model: Path) -> Any:
        return parse_daemon_config({"cameras": {"door": {**camera, "model": str(model)}},
                                    "metrics": {"port": 0},
                                    "storage": {"path": str(tmp_path / "store"),
                                                "snapshots": False}},  # Always has no cells
                                   "test.toml")

    daemon = Daemon(config(DEFAULT_MODEL), open(tmp_path / "stdout", "w"), scorer=Always)
    daemon.start()

    def rows() -> list[tuple[str, str]]:
        return [(e.event_id, e.type) for e in daemon.store.query("door")]

    def wait(ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not ok():
            assert time.monotonic() < deadline, rows()
            time.sleep(0.1)

    try:
        wait(lambda: any(t == "start" for _, t in rows()))
        first = rows()[0][0]
        daemon.reload(config(tuned))
        assert [m.path for m in daemon._captures["door"].models] == [tuned]
        wait(lambda: len({i for i, _ in rows()}) >= 2)
    finally:
        daemon.stop()
    reader = EventStore(tmp_path / "store" / "events.sqlite")
    try:
        stored = [(e.event_id, e.type, e.payload["after"]["end_reason"])
                  for e in reader.query("door")]
    finally:
        reader.close()
    assert (first, "end", "camera removed") in stored  # ended at the reload, stored as usual
    assert stored[-1][0] != first and stored[-1][1] == "end"  # then one on the new model
    assert {p.name: p.read_bytes() for p in DEFAULT_MODEL.iterdir() if p.is_file()} == before
