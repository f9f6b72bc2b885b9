"""Live capture: backoff, the capture loop against a fake FrameSource, and OpenCVSource on real files."""

from __future__ import annotations

import http.server
import logging
import random
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stream_detector.capture import (
    Backoff,
    CaptureLoop,
    DropPolicy,
    FrameQueue,
    FrameSource,
    OpenCVSource,
    redact,
    source_kind,
)
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError
from stream_detector.messages import Frame, StreamState

# --- Backoff ----------------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    b = Backoff(initial=1.0, maximum=100.0, factor=1.0, jitter=0.2, rng=random.Random(7))
    delays = [b.next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 100
    capped = Backoff(initial=10.0, maximum=10.0, jitter=0.5, rng=random.Random(1))
    assert all(5.0 <= capped.next() <= 10.0 for _ in range(100))


@pytest.mark.parametrize("kw", [{"initial": 0.0}, {"initial": 5.0, "maximum": 1.0},
                                {"factor": 0.5}, {"jitter": 1.0}])
def test_backoff_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)  # type: ignore[arg-type]


# --- A fake camera at the FrameSource seam ----------------------------------------------------


class FakeSource:
    """Plays `sizes` (one (w, h) per frame) at 10 fps of stream time, then ends as told."""

    def __init__(self, sizes: list[tuple[int, int]], then: str = "fail", open_error: str = "",
                 interval: float = 0.0) -> None:
        self.sizes, self.then, self.open_error, self.interval = sizes, then, open_error, interval
        self.pos = -1
        self.retrieved = 0
        self.closed = False
        self.release = threading.Event()  # lets a hung grab return at teardown

    def open(self) -> None:
        if self.open_error == "hang":
            self.release.wait(10)
        elif self.open_error:
            raise SourceError(self.open_error)

    def grab(self) -> bool:
        if self.interval:
            time.sleep(self.interval)
        if self.then == "crash" and self.pos + 1 >= len(self.sizes):
            raise RuntimeError("driver bug")
        if self.pos + 1 >= len(self.sizes):
            if self.then == "hang":
                self.release.wait(10)
            if self.then == "forever":
                self.sizes.append(self.sizes[-1])
            else:
                return False
        self.pos += 1
        return True

    def retrieve(self) -> np.ndarray | None:
        self.retrieved += 1
        w, h = self.sizes[self.pos]
        return np.full((h, w, 3), self.pos % 256, np.uint8)

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def close(self) -> None:
        self.closed = True

    @property
    def stream_time(self) -> float:
        return self.pos / 10.0

    @property
    def finished(self) -> bool:
        return self.then == "finish" and self.pos + 1 >= len(self.sizes)


class Recorder:
    """Records what the loop reports, in order; lets a test wait for a given call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._cond = threading.Condition()

    def _add(self, *call: object) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def frame_read(self, camera: str) -> None:
        self._add("read", camera)

    def frame_dropped(self, camera: str) -> None:
        self._add("dropped", camera)

    def frames_skipped(self, camera: str, n: int) -> None:
        self._add("skipped", n)

    def stream_state(self, camera: str, up: bool) -> None:
        self._add("up" if up else "down", camera)

    def reconnecting(self, camera: str) -> None:
        self._add("reconnecting", camera)

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        self._add("size", width, height)

    def states(self) -> list[str]:
        with self._cond:
            return [str(c[0]) for c in self.calls if c[0] in ("up", "down", "reconnecting")]

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for c in self.calls if c[0] == kind)

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(pred, timeout)


def sources(*items: FakeSource) -> Callable[[], FrameSource]:
    """An open_source factory handing out the given sources, then repeating the last."""
    made = list(items)

    def make() -> FrameSource:
        return made.pop(0) if len(made) > 1 else made[0]
    return make


FAST = {"initial": 0.01, "maximum": 0.02, "jitter": 0.0}


@pytest.fixture()
def run_loop() -> Iterator[Callable[..., tuple[CaptureLoop, FrameQueue[Frame], Recorder]]]:
    stop = threading.Event()
    loops: list[CaptureLoop] = []

    def start(open_source: Callable[[], FrameSource], maxsize: int = 64,
              **kw: object) -> tuple[CaptureLoop, FrameQueue[Frame], Recorder]:
        q: FrameQueue[Frame] = FrameQueue(maxsize, DropPolicy.DROP_OLDEST,  # type: ignore[arg-type]
                                          keep=lambda item: isinstance(item, StreamState))
        rec = Recorder()
        kw.setdefault("backoff", Backoff(**FAST))  # type: ignore[arg-type]
        loop = CaptureLoop("door", open_source, q, stop, rec, **kw)  # type: ignore[arg-type]
        loop.start()
        loops.append(loop)
        return loop, q, rec

    yield start
    stop.set()
    for loop in loops:
        loop.join(3)
        assert not loop.is_alive()


def frames_of(q: FrameQueue[Any]) -> list[Frame]:
    """The frames in the queue, without the stream-state messages between them."""
    return [f for f in q.get_all() if isinstance(f, Frame)]


def test_frames_flow_in_order_until_a_finite_source_ends(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 20, then="finish")
    loop, q, rec = run_loop(sources(src))
    loop.join(3)
    assert not loop.is_alive()  # a finished file is final: no reconnect
    items = q.get_all()
    first, last = items[0], items[-1]
    assert isinstance(first, StreamState) and first.up  # in order with the frames, not beside them
    assert isinstance(last, StreamState) and not last.up and last.reason == "end of source"
    frames = items[1:-1]
    assert [f.index for f in frames] == list(range(20))
    assert [f.stream_time for f in frames] == pytest.approx([i / 10 for i in range(20)])
    assert all(f.camera == "door" and f.image.shape == (48, 64, 3) for f in frames)
    assert frames[0].mono_time <= frames[-1].mono_time
    assert rec.states() == ["up", "down"] and rec.count("read") == 20
    assert src.closed


def test_full_queue_drops_oldest_and_counts(run_loop) -> None:  # type: ignore[no-untyped-def]
    loop, q, rec = run_loop(sources(FakeSource([(64, 48)] * 20, then="finish")), maxsize=4)
    loop.join(3)
    items = q.get_all()  # the state messages are never the ones dropped
    assert [f.index if isinstance(f, Frame) else f.up for f in items] == [True, 18, 19, False]
    assert q.dropped == 18 and rec.count("dropped") == 17  # 17 frames refused, then 1 for "down"


def test_lost_stream_reconnects_and_frames_continue(run_loop, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "stream_detector.capture")
    first = FakeSource([(64, 48)] * 5, then="fail")
    second = FakeSource([(64, 48)] * 5, then="finish")
    loop, q, rec = run_loop(sources(first, second))
    loop.join(3)
    items = q.get_all()
    assert [f.index if isinstance(f, Frame) else f.up for f in items] == [
        True, 0, 1, 2, 3, 4, False, True, 0, 1, 2, 3, 4, False]  # the loss between the frames
    assert rec.states() == ["up", "down", "reconnecting", "up", "down"]
    assert first.closed and second.closed
    lost = [r.getMessage() for r in caplog.records if "stream lost" in r.getMessage()]
    assert lost == ["camera door: stream lost (source returned no frame), reconnecting in 0.0s"]


def test_camera_down_at_start_is_retried_and_logged_once(run_loop, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "stream_detector.capture")
    down = FakeSource([], open_error="rtsp://cam/1: cannot open (refused)")
    up = FakeSource([(64, 48)] * 3, then="finish")
    loop, q, rec = run_loop(sources(down, down, down, up))
    loop.join(3)
    assert len(frames_of(q)) == 3
    assert rec.states() == ["down", "reconnecting", "reconnecting", "reconnecting", "up", "down"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [("camera door: cannot open stream (rtsp://cam/1: cannot open (refused)), "
                         "reconnecting in 0.0s")]


def test_resolution_change_mid_stream(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 3 + [(32, 24)] * 3, then="finish")
    loop, q, rec = run_loop(sources(src))
    loop.join(3)
    assert [f.image.shape[:2] for f in frames_of(q)] == [(48, 64)] * 3 + [(24, 32)] * 3
    assert [c for c in rec.calls if c[0] == "size"] == [("size", 64, 48), ("size", 32, 24)]


def test_fps_limit_skips_frames_without_converting_them(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 20, then="finish")  # 10 fps of stream time
    loop, q, rec = run_loop(sources(src), fps_limit=5.0)
    loop.join(3)
    assert [f.index for f in frames_of(q)] == list(range(0, 20, 2))
    assert src.retrieved == 10
    assert [c for c in rec.calls if c[0] == "skipped"] == [("skipped", 1)] * 9  # counted, not lost


def test_hung_source_counts_as_lost_after_stale_after(run_loop) -> None:  # type: ignore[no-untyped-def]
    hung = FakeSource([(64, 48)] * 3, then="hang")
    good = FakeSource([(64, 48)] * 3, then="finish")
    t0 = time.monotonic()
    loop, _, rec = run_loop(sources(hung, good), stale_after=0.3)
    try:
        assert rec.wait_for(lambda: rec.count("read") == 6, 3.0)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert rec.states()[:4] == ["up", "down", "reconnecting", "up"]
    finally:
        hung.release.set()
    loop.join(3)
    deadline = time.monotonic() + 2.0
    while not hung.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hung.closed  # the abandoned reader closed its source once the grab returned


def test_hung_open_is_abandoned_after_open_timeout(run_loop) -> None:  # type: ignore[no-untyped-def]
    hung = FakeSource([(64, 48)], open_error="hang")
    good = FakeSource([(64, 48)] * 3, then="finish")
    t0 = time.monotonic()
    _, _, rec = run_loop(sources(hung, good), stale_after=30.0, open_timeout=0.3)
    try:
        assert rec.wait_for(lambda: rec.count("read") == 3, 3.0)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert rec.states()[:3] == ["down", "reconnecting", "up"]
    finally:
        hung.release.set()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashing_source_is_reconnected_without_waiting_for_staleness(run_loop) -> None:  # type: ignore[no-untyped-def]
    crash = FakeSource([(64, 48)] * 2, then="crash")
    good = FakeSource([(64, 48)] * 2, then="finish")
    loop, _, rec = run_loop(sources(crash, good), stale_after=30.0)
    loop.join(3)
    assert rec.states() == ["up", "down", "reconnecting", "up", "down"]
    assert crash.closed


@pytest.mark.parametrize("then", ["forever", "hang"])
def test_stop_ends_the_loop_promptly(run_loop, then: str) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 2, then=then, interval=0.005)
    loop, _, rec = run_loop(sources(src), stale_after=30.0)
    try:
        assert rec.wait_for(lambda: rec.count("read") >= 2)
        t0 = time.monotonic()
        loop.stop.set()
        loop.join(2.5)
        assert not loop.is_alive() and time.monotonic() - t0 < 2.5
    finally:
        src.release.set()


# --- OpenCVSource on real files ---------------------------------------------------------------


@pytest.fixture()
def short_clip(tmp_path: Path) -> Path:
    """Ten 64x48 frames at 20 fps, Motion-JPEG in AVI (every OpenCV build writes that)."""
    path = tmp_path / "short.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


def test_opencv_source_reads_a_file_as_fast_as_possible(vtest: Path) -> None:
    src = OpenCVSource(str(vtest), realtime=False)
    src.open()
    try:
        times = []
        for _ in range(5):
            frame = src.read()
            assert frame is not None and frame.shape == (576, 768, 3) and frame.dtype == np.uint8
            times.append(src.stream_time)
        assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    finally:
        src.close()


def test_file_ends_or_loops_with_growing_stream_time(short_clip: Path) -> None:
    once = OpenCVSource(str(short_clip), realtime=False)
    once.open()
    n = 0
    while once.read() is not None:
        n += 1
    assert n == 10 and once.finished
    once.close()
    looped = OpenCVSource(str(short_clip), realtime=False, loop=True)
    looped.open()
    times = []
    for _ in range(25):
        assert looped.read() is not None
        times.append(looped.stream_time)
    looped.close()
    assert not looped.finished
    assert np.diff(times) == pytest.approx(np.full(24, 0.05))


def test_realtime_file_is_paced_at_its_frame_rate(short_clip: Path) -> None:
    src = OpenCVSource(str(short_clip), realtime=True)
    src.open()
    t0 = time.monotonic()
    for _ in range(6):
        assert src.read() is not None
    assert time.monotonic() - t0 >= 0.24  # frame 6 is due 0.25 s after the first
    src.close()


class MjpegHandler(http.server.BaseHTTPRequestHandler):
    """Serves 20 frames of 160x120 Motion-JPEG the way IP cameras do, then ends the response."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(20):
            jpg = cv2.imencode(".jpg", np.full((120, 160, 3), i * 10, np.uint8))[1].tobytes()
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: %d\r\n\r\n%s\r\n" % (len(jpg), jpg))
            time.sleep(0.01)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mjpeg_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), MjpegHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_opencv_source_reads_http_mjpeg_until_the_stream_ends(mjpeg_url: str) -> None:
    src = OpenCVSource(mjpeg_url, open_timeout=5, read_timeout=3)
    src.open()
    try:
        frames = []
        while (frame := src.read()) is not None:
            frames.append(frame)
        assert len(frames) == 20 and frames[0].shape == (120, 160, 3)
        assert 0 < src.stream_time < 5 and not src.finished  # a live stream that ends is a fault
    finally:
        src.close()


def one_line_error(src: OpenCVSource) -> str:
    with pytest.raises(SourceError) as err:
        src.open()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_sources_raise_one_line_source_errors(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(OpenCVSource(str(tmp_path / "missing.mp4")))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert "not a readable video" in one_line_error(OpenCVSource(str(text)))
    assert "video device 97" in one_line_error(OpenCVSource("97"))
    message = one_line_error(OpenCVSource("rtsp://admin:s3cret@127.0.0.1:1/live", open_timeout=2))
    assert "cannot open" in message and "s3cret" not in message and "admin:***@" in message


def test_from_config_times_out_reads_after_the_loop_would() -> None:
    cam = CameraConfig(source="rtsp://cam/1", realtime=False, loop=True, stale_after=4.0)
    src = OpenCVSource.from_config(cam)
    assert (src.uri, src.kind, src.realtime, src.loop) == ("rtsp://cam/1", "stream", False, True)
    assert src.read_timeout > cam.stale_after


def test_source_kind_and_redaction() -> None:
    assert [source_kind(u) for u in ("0", "rtsp://h/x", "HTTP://h/x.mjpg", "udp://@:1234",
                                     "clips/a.mp4")] == ["device", "stream", "stream", "stream", "file"]
    assert redact("rtsp://u:p@h:554/x") == "rtsp://u:***@h:554/x"
    assert redact("rtsp://h/x") == "rtsp://h/x"


def test_camera_width_height_resize_frames_after_decoding(vtest: Path) -> None:
    from stream_detector.capture import source_for

    source = source_for(CameraConfig(source=str(vtest), realtime=False, width=384, height=288))
    source.open()
    try:
        frame = source.read()
        assert frame is not None and frame.shape == (288, 384, 3)
        assert source.stream_time == 0.0
    finally:
        source.close()
    plain = source_for(CameraConfig(source=str(vtest), realtime=False))
    plain.open()
    try:
        frame = plain.read()
        assert frame is not None and frame.shape == (576, 768, 3)
    finally:
        plain.close()


def test_demo_source_injects_the_object_only_in_its_frames(vtest: Path) -> None:
    from stream_detector.capture import DemoSource, Injection

    plain = OpenCVSource(str(vtest), realtime=False)
    demo = DemoSource(OpenCVSource(str(vtest), realtime=False), Injection(2, 4), period=795)
    plain.open(), demo.open()
    try:
        changed = []
        for _ in range(6):
            a, b = plain.read(), demo.read()
            assert a is not None and b is not None
            changed.append(bool((a != b).any()))
        assert changed == [False, False, True, True, False, False]
        assert demo.stream_time == plain.stream_time
    finally:
        plain.close(), demo.close()
