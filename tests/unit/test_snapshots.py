"""Substreams: a camera scores its low-resolution `detect_source`; snapshots show its main stream.

Real clips throughout: vtest.avi (768x576) is the main stream, a 384x288 cut of it the substream.
The main-stream reader keeps a short bounded history, finds the frame nearest a time, and rides out
a file that vanishes, turns to garbage and returns; the in-process Daemon stores events whose box is
in scored pixels with a snapshot drawn at the main stream's size.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stream_detector.capture import (
    Backoff,
    FrameHistory,
    MainStream,
    main_stream_config,
    scored_config,
    source_for,
)
from stream_detector.config import CameraConfig, parse_daemon_config
from stream_detector.daemon import Daemon
from stream_detector.messages import Box, Event, Frame, FrameScore, Peak
from stream_detector.daemon import load_camera_model
from stream_detector.outputs import EventStore, renderer_for, scale_box


def cut(vtest: Path, out: Path, seconds: float, width: int, height: int) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest), "-t", str(seconds), "-vf",
                    f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-threads", "1", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def small(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of vtest at 384x288: the substream."""
    return cut(vtest, tmp_path_factory.mktemp("clips") / "small.mp4", 6, 384, 288)


@pytest.fixture(scope="module")
def second(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of vtest at 384x288: a file that loops quickly."""
    return cut(vtest, tmp_path_factory.mktemp("clips") / "second.mp4", 1, 384, 288)


def frame(mono: float, index: int = 0) -> Frame:
    return Frame("door", index, mono, time.time(), mono, np.zeros((4, 4, 3), np.uint8))


class States:
    """The main stream's state reports, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool | None]] = []
        self.changed = threading.Condition()

    def __call__(self, camera: str, up: bool | None) -> None:
        with self.changed:
            self.seen.append((camera, up))
            self.changed.notify_all()

    def wait(self, up: bool | None, after: int = 0, timeout: float = 15.0) -> int:
        """Index of the first report `up` from `after` on; fails after `timeout` seconds."""
        with self.changed:
            ok = self.changed.wait_for(lambda: any(u is up for _, u in self.seen[after:]), timeout)
            assert ok, f"no {up} report after #{after} within {timeout}s: {self.seen}"
            return next(i for i in range(after, len(self.seen)) if self.seen[i][1] is up)


def reader(source: str, states: States, **camera: Any) -> MainStream:
    cfg = CameraConfig(source=source, detect_source="unused.mp4", capture="opencv", **camera)
    main_cfg = main_stream_config(cfg)
    assert main_cfg is not None
    return MainStream("door", lambda: source_for(main_cfg), states, stale_after=2.0,
                      backoff=lambda: Backoff(0.05, 0.2))


# --- the history ---------------------------------------------------------------------------------

def test_history_keeps_the_last_seconds_and_at_most_its_frame_budget() -> None:
    history = FrameHistory(seconds=3.0, fps=4.0)
    for i in range(100):  # 10 s at 10 fps: more than the span and more than the budget
        history.put(frame(100.0 + i * 0.1, i))
    assert len(history) == 13  # 3 s x 4 fps + 1
    history = FrameHistory(seconds=3.0, fps=4.0)
    for i in range(10):  # 1 frame every 2 s: the span, not the budget, limits it
        history.put(frame(100.0 + 2.0 * i, i))
    assert len(history) == 2 and history.oldest() == 116.0


def test_nearest_frame_in_capture_time_or_none_when_too_far() -> None:
    history = FrameHistory(seconds=3.0, fps=4.0)
    for t in (10.0, 10.25, 10.5, 10.75, 11.0):
        history.put(frame(t))
    for wanted, expected in [(10.3, 10.25), (10.4, 10.5), (9.5, 10.0), (11.9, 11.0),
                             (10.75, 10.75)]:
        found = history.nearest(wanted)
        assert found is not None and found.mono_time == expected, (wanted, found)
    assert history.nearest(12.1) is None and history.nearest(8.9) is None
    assert FrameHistory().nearest(10.0) is None


def test_scale_box_maps_scored_pixels_onto_the_main_frame() -> None:
    assert scale_box(Box(10, 20, 101, 288), 2.0, 2.0, 768, 576) == Box(20, 40, 202, 576)
    full = Box(0, 0, 1920, 1080)
    assert scale_box(Box(0, 0, 384, 216), 1920 / 384, 1080 / 216, 1920, 1080) == full
    assert scale_box(None, 2.0, 2.0, 768, 576) is None


def test_the_scored_stream_is_detect_source_and_the_main_stream_keeps_its_size() -> None:
    cam = CameraConfig(source="rtsp://cam/main", detect_source="rtsp://cam/sub", width=320,
                       height=240, capture="ffmpeg", hwaccel="cuda", realtime=False)
    scored, main = scored_config(cam), main_stream_config(cam)
    assert (scored.source, scored.width, scored.capture, scored.hwaccel) == (
        "rtsp://cam/sub", 320, "ffmpeg", "cuda")
    assert main is not None and (main.source, main.width, main.height, main.hwaccel) == (
        "rtsp://cam/main", 0, 0, "cuda")
    plain = CameraConfig(source="rtsp://cam/main")
    assert scored_config(plain) is plain and main_stream_config(plain) is None


# --- the reader on real files --------------------------------------------------------------------

def test_reader_keeps_a_bounded_history_of_converted_frames(small: Path) -> None:
    """A 6 s file read as fast as it decodes: every frame grabbed, about 4 per second converted,
    never more than the budget kept."""
    states = States()
    main = reader(str(small), states, realtime=False)
    main.start()
    try:
        main.loop.join(30)
        assert main.loop.finished, "the file should end and the reader finish"
        kept = list(main.frames._frames)
        assert 2 <= len(kept) <= 13
        assert all(f.image.shape == (288, 384, 3) for f in kept)
        gaps = np.diff([f.stream_time for f in kept])
        assert gaps.min() > 0.19, gaps  # 10 fps file, 4 fps kept: frames in between not converted
        assert [u for _, u in states.seen][:2] == [False, True]
    finally:
        main.stop()
    assert states.seen[-1] == ("door", None)


def test_reader_reconnects_after_the_file_vanishes_turns_to_garbage_and_returns(
        second: Path, tmp_path: Path) -> None:
    path = tmp_path / "main.mp4"
    shutil.copy(second, path)
    states = States()
    main = reader(str(path), states, loop=True)
    main.start()
    try:
        up = states.wait(True)
        path.rename(tmp_path / "away.mp4")  # the next loop of the file cannot reopen it
        down = states.wait(False, after=up)
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
        time.sleep(0.8)  # several retries on garbage: still down, the thread alive
        assert main.loop.is_alive() and all(u is False for _, u in states.seen[down:])
        before = len(main.frames)
        (tmp_path / "away.mp4").replace(path)
        states.wait(True, after=down)
        deadline = time.monotonic() + 10
        while (newest := main.frames.nearest(time.monotonic(), within=0.5)) is None:
            assert time.monotonic() < deadline, "no fresh frame after the file returned"
            time.sleep(0.05)
        assert newest.image.shape == (288, 384, 3) and len(main.frames) >= min(before, 1)
    finally:
        main.stop()
    assert not main.loop.is_alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_main_stream_thread_that_dies_of_a_bug_is_restarted(second: Path) -> None:
    states = States()
    main = reader(str(second), states, loop=True)
    main.start()
    try:
        states.wait(True)
        dead = main.loop

        def broken(item: Any) -> bool:
            raise RuntimeError("injected main-stream fault")

        main.frames.put = broken  # type: ignore[method-assign]
        dead.join(10)
        assert not dead.is_alive() and not dead.finished
        del main.frames.put  # the bug is gone; the history the renderer holds stays the same
        assert main.supervise() and main.loop is not dead
        deadline = time.monotonic() + 10
        while main.frames.nearest(time.monotonic(), within=0.5) is None:
            assert time.monotonic() < deadline, "the restarted reader keeps nothing"
            time.sleep(0.05)
        assert not main.supervise()
    finally:
        main.stop()


# --- rendering -----------------------------------------------------------------------------------

def test_snapshot_falls_back_to_the_scored_frame_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    model = load_camera_model("door", CameraConfig(source="x"), "cpu", "test")
    history = FrameHistory()
    render = renderer_for("door", model, 1.0, history)
    cells = np.zeros(model.slicer.grid, np.float32)
    peak = Peak(5.0, np.zeros((288, 384, 3), np.uint8), cells, Box(0, 0, 96, 72), time.monotonic())
    event = Event("e1", "door", "start", time.time(), 0.0, None, None, 5.0, 0, peak.box, 5.0)
    with caplog.at_level(logging.WARNING, "stream_detector.outputs.snapshots"):
        shapes = [decoded(render(peak, event)).shape for _ in range(3)]
    assert shapes == [(288, 384, 3)] * 3
    assert len([r for r in caplog.records if "no main-stream frame" in r.message]) == 1
    history.put(Frame("door", 0, 0.0, time.time(), peak.mono_time or 0.0,
                      np.zeros((576, 768, 3), np.uint8)))
    jpeg = render(peak, event)
    assert decoded(jpeg).shape == (576, 768, 3)
    later = Peak(5.0, peak.image, cells, peak.box, (peak.mono_time or 0.0) + 0.5)
    history.put(Frame("door", 1, 0.5, time.time(), later.mono_time or 0.0,
                      np.zeros((720, 1280, 3), np.uint8)))  # 16:9 main, 4:3 scored
    with caplog.at_level(logging.WARNING, "stream_detector.outputs.snapshots"):
        assert [decoded(render(later, event)).shape for _ in range(2)] == [(720, 1280, 3)] * 2
    assert len([r for r in caplog.records if "aspect ratio" in r.message]) == 1


def decoded(jpeg: bytes | None) -> np.ndarray:
    assert jpeg, "nothing rendered"
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


# --- the daemon ----------------------------------------------------------------------------------

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
