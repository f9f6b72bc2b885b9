"""OpenCVSource on real files and an HTTP MJPEG stream: reading, loops, pacing, one-line errors."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_detector.capture import (
    OpenCVProcessSource,
    OpenCVSource,
    opencv_source,
)
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError


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
    src = opencv_source(cam)
    assert isinstance(src, OpenCVProcessSource)  # network cameras: a reader process each
    assert (src.uri, src.kind, src.realtime, src.loop) == ("rtsp://cam/1", "stream", False, True)
    assert src.read_timeout > cam.stale_after
    assert isinstance(opencv_source(CameraConfig(source="clip.avi")), OpenCVSource)


def test_a_network_camera_is_read_by_a_reader_process_that_never_shows_the_password(
        mjpeg_url: str) -> None:
    url = mjpeg_url.replace("http://", "http://viewer:s3cr%23t@")
    src = OpenCVProcessSource(url, open_timeout=5, read_timeout=3)
    src.open()
    try:
        assert src._proc is not None
        argv = Path(f"/proc/{src._proc.pid}/cmdline").read_bytes().split(b"\0")
        assert not any(b"s3cr" in arg or b"viewer" in arg for arg in argv), argv
        frames = []
        while (frame := src.read()) is not None:
            frames.append(frame)
        assert len(frames) == 20 and frames[0].shape == (120, 160, 3)
        assert 0 < src.stream_time < 5 and not src.finished
    finally:
        src.close()
    assert src._proc is None


def test_a_reader_process_that_cannot_open_says_why_in_one_line() -> None:
    src = OpenCVProcessSource("rtsp://admin:s3cret@127.0.0.1:1/live", open_timeout=2)
    message = one_line_error(src)  # type: ignore[arg-type]
    assert "cannot open" in message and "refused, unreachable" in message
    assert "s3cret" not in message and "admin:***@" in message


@pytest.fixture()
def silent_url() -> Iterator[str]:
    """A camera that accepts the connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"rtsp://127.0.0.1:{server.getsockname()[1]}/live"
    server.close()


def test_interrupt_ends_a_hung_open_at_once(silent_url: str) -> None:
    src = OpenCVProcessSource(silent_url, open_timeout=10)
    threading.Timer(0.5, src.interrupt).start()
    start = time.monotonic()
    with pytest.raises(SourceError):
        src.open()
    assert time.monotonic() - start < 1.5
    src.close()
