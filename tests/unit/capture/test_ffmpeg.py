"""FFmpegSource, the capture that runs one real `ffmpeg` child per camera: frames as OpenCV decodes
them, pacing, loops, one-line errors, timeouts, no child left behind; and choosing it by config.

ffmpeg is part of the dev setup (./dev installs Debian's ffmpeg): a missing binary fails, never skips.
"""

from __future__ import annotations

import http.server
import os
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
    FFmpegSource,
    OpenCVSource,
    capture_backend,
    ffmpeg_missing,
)
from stream_detector.config import CameraConfig
from stream_detector.daemon.environment import check_capture
from stream_detector.errors import ConfigError, SourceError


@pytest.fixture(scope="module", autouse=True)
def ffmpeg() -> None:
    assert not ffmpeg_missing(), "ffmpeg/ffprobe not found: install Debian's ffmpeg (./dev setup does)"


def children(name: str) -> list[int]:
    """Pids of this process's live children running `name` (from /proc, no extra packages)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(rest[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """Every test must leave no ffmpeg or ffprobe child behind, running or zombie."""
    yield
    assert children("ffmpeg") == [] and children("ffprobe") == []


@pytest.fixture()
def short_clip(tmp_path: Path) -> Path:
    """Ten 64x48 frames at 20 fps, Motion-JPEG in AVI (as tests/unit/capture/test_opencv.py)."""
    path = tmp_path / "short.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


def test_decodes_the_same_frames_as_opencv(vtest: Path) -> None:
    ours, theirs = FFmpegSource(str(vtest), realtime=False), OpenCVSource(str(vtest), realtime=False)
    ours.open(), theirs.open()
    try:
        n, diffs = 0, []
        while (a := ours.read()) is not None:
            b = theirs.read()
            assert b is not None and a.shape == b.shape == (576, 768, 3) and a.dtype == np.uint8
            assert ours.stream_time == pytest.approx(theirs.stream_time)
            if n % 50 == 0:
                diffs.append(float(np.abs(a.astype(np.int16) - b).mean()))
            n += 1
        assert theirs.read() is None
        assert n == 795 and ours.finished and theirs.finished
        assert max(diffs) < 1.0, diffs  # the same decoder; only the colour conversion may differ
    finally:
        ours.close(), theirs.close()


def test_file_ends_or_loops_with_growing_stream_time(short_clip: Path) -> None:
    once = FFmpegSource(str(short_clip), realtime=False)
    once.open()
    frames = []
    while (frame := once.read()) is not None:
        frames.append(int(frame.mean()))
    once.close()
    assert len(frames) == 10 and once.finished
    assert frames == pytest.approx([i * 20 for i in range(10)], abs=3)
    looped = FFmpegSource(str(short_clip), realtime=False, loop=True)
    looped.open()
    times = []
    for _ in range(25):
        assert looped.read() is not None
        times.append(looped.stream_time)
    looped.close()
    assert not looped.finished and times[-1] > 0.5  # past the clip's length (10 frames at 20 fps)
    assert np.diff(times) == pytest.approx(np.full(24, 0.05))


def test_realtime_file_is_paced_at_its_frame_rate(short_clip: Path) -> None:
    src = FFmpegSource(str(short_clip), realtime=True, loop=True)
    src.open()
    try:
        t0 = time.monotonic()
        for _ in range(21):
            assert src.read() is not None
        elapsed = time.monotonic() - t0
    finally:
        src.close()
    assert 0.95 <= elapsed < 2.0, elapsed  # frame 21 is due 1.0 s after the first, across a loop


def one_line_error(src: FFmpegSource) -> str:
    with pytest.raises(SourceError) as err:
        src.open()
    message = str(err.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def test_bad_sources_raise_one_line_source_errors(tmp_path: Path, vtest: Path) -> None:
    assert one_line_error(FFmpegSource(str(tmp_path / "missing.mp4"))) == \
        f"{tmp_path / 'missing.mp4'}: no such file"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    message = one_line_error(FFmpegSource(str(text)))
    assert message.startswith(f"{text}: not a readable video (") and "Invalid data" in message
    message = one_line_error(FFmpegSource("rtsp://admin:s3cret@127.0.0.1:1/live", open_timeout=5))
    assert "cannot open" in message and "refused" in message.lower(), message
    assert "s3cret" not in message and "admin:***@" in message
    message = one_line_error(FFmpegSource(str(vtest), hwaccel="nosuch"))
    assert "not a readable video" in message and "nosuch" in message, message
    assert "reads files and streams only" in one_line_error(FFmpegSource("0"))


def test_missing_ffmpeg_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, vtest: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no ffmpeg lives
    assert "install Debian's ffmpeg package" in one_line_error(FFmpegSource(str(vtest)))
    cam = CameraConfig(source="rtsp://cam/1", capture="ffmpeg")
    with pytest.raises(ConfigError) as err:
        check_capture("door", cam, "cfg.toml")
    assert str(err.value).startswith('cfg.toml: cameras.door.capture: "ffmpeg" needs ffmpeg')
    assert capture_backend(CameraConfig(source="rtsp://cam/1")) == "opencv"  # auto falls back
    check_capture("door", CameraConfig(source="rtsp://cam/1"), "cfg.toml")  # auto: no error


class StallingMjpeg(http.server.BaseHTTPRequestHandler):
    """Five frames of 160x120 Motion-JPEG, then the connection stays open and silent (a hung camera)."""

    release: threading.Event

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(5):
            jpg = cv2.imencode(".jpg", np.full((120, 160, 3), i * 40, np.uint8))[1].tobytes()
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: %d\r\n\r\n%s\r\n" % (len(jpg), jpg))
        self.wfile.flush()
        self.release.wait(30)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def stalling_url() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (StallingMjpeg,), {"release": release})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_hung_stream_times_out_the_read_and_close_kills_the_child(stalling_url: str) -> None:
    src = FFmpegSource(stalling_url, open_timeout=10, read_timeout=1.0)
    src.open()
    try:
        got = 0
        t0 = time.monotonic()
        while src.read() is not None:
            got += 1
            t0 = time.monotonic()
        waited = time.monotonic() - t0
        assert 1 <= got <= 5 and not src.finished  # ffmpeg may hold back the last frames
        assert 0.9 <= waited < 3.0, waited  # bounded by read_timeout, not by the hung child
        assert len(children("ffmpeg")) == 1  # still hung, until close
    finally:
        src.close()
    assert children("ffmpeg") == []


def test_a_hung_open_gives_up_after_open_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as hole:  # accepts, never answers
        port = hole.getsockname()[1]
        t0 = time.monotonic()
        message = one_line_error(FFmpegSource(f"rtsp://127.0.0.1:{port}/x", open_timeout=1.5))
        assert 1.4 <= time.monotonic() - t0 < 4.0
    assert message == f"rtsp://127.0.0.1:{port}/x: cannot open (no answer within 1.5s)"


def test_a_password_reaches_ffprobe_and_ffmpeg_on_a_pipe_never_on_their_command_line(
        stalling_url: str) -> None:
    url = stalling_url.replace("http://", "http://viewer:p%23ss%2Fw0rd@")
    src = FFmpegSource(url, open_timeout=10, read_timeout=1.0)
    src.open()
    try:
        (pid,) = children("ffmpeg")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"-f" in argv and b"concat" in argv and any(a.startswith(b"pipe:") for a in argv)
        assert not any(b"ss%2Fw0rd" in a or b"viewer" in a for a in argv), argv
        assert src.read() is not None and src.retrieve().shape == (120, 160, 3)
    finally:
        src.close()
    assert src.name == stalling_url.replace("http://", "http://viewer:***@")


def test_interrupt_ends_a_hung_open_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as hole:  # accepts, never answers
        src = FFmpegSource(f"rtsp://127.0.0.1:{hole.getsockname()[1]}/x", open_timeout=10)
        threading.Timer(0.5, src.interrupt).start()
        t0 = time.monotonic()
        assert one_line_error(src).endswith(": interrupted")
        assert time.monotonic() - t0 < 1.5


def test_close_reaps_the_child_mid_stream(vtest: Path) -> None:
    src = FFmpegSource(str(vtest), realtime=False)
    src.open()
    assert src.read() is not None and len(children("ffmpeg")) == 1
    src.close()
    assert children("ffmpeg") == []
    src.close()  # twice is harmless
    src.open()  # and the source can be opened again, from the start
    assert src.read() is not None and src.stream_time == 0.0
    src.close()


@pytest.mark.parametrize(("kw", "message"), [
    ({"capture": "gstreamer"}, "capture: must be auto, opencv or ffmpeg"),
    ({"capture": "ffmpeg", "source": "0"}, "capture: ffmpeg reads files and network streams"),
    ({"capture": "ffmpeg", "hwaccel": "cuda -y /tmp/x"}, "hwaccel: must be an ffmpeg -hwaccel name"),
    ({"capture": "ffmpeg", "hwaccel": "x" * 33}, "hwaccel: must be an ffmpeg -hwaccel name"),
    ({"hwaccel": "cuda"}, 'hwaccel: needs capture = "ffmpeg"'),
    ({"capture": "opencv", "hwaccel": "cuda"}, 'hwaccel: needs capture = "ffmpeg"'),
])
def test_bad_capture_settings_are_refused(kw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        CameraConfig(**{"source": "rtsp://cam/1", **kw})  # type: ignore[arg-type]
    assert str(err.value).startswith(message)


def test_hwaccel_must_be_known_to_this_ffmpeg() -> None:
    check_capture("door", CameraConfig(source="rtsp://cam/1", capture="ffmpeg", hwaccel="auto"), "c")
    with pytest.raises(ConfigError) as err:
        check_capture("door", CameraConfig(source="rtsp://cam/1", capture="ffmpeg", hwaccel="nosuch"),
                      "c")
    assert str(err.value).startswith("c: cameras.door.hwaccel: 'nosuch' is not a method")
