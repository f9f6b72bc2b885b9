"""Why FFmpeg capture exists: a camera whose open hangs must not delay another camera.

Two capture loops in one process: camera "hung" points at a port that accepts the connection and
never answers (its RTSP open hangs until its timeout, again at every retry), camera "door" at the
real RTSP server. Each FFmpegSource runs its own ffmpeg/ffprobe process, so door's first frame
arrives while hung's open is still in progress. (OpenCV's FFmpeg backend opens captures one at a
time under a process-wide lock, so with OpenCVSource door's open could wait for hung's timeout;
no test depends on that lock being there.)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rtsp_helpers import Recorder, RtspServer, require_ffmpeg, serving, wait_frame

from stream_detector.capture import Backoff, CaptureLoop, FFmpegSource, FrameQueue
from stream_detector.messages import Frame

pytestmark = pytest.mark.integration

HANG = 12.0  # the hung camera's open timeout: far longer than the other camera needs to start
FIRST_FRAME = 10.0  # door's first frame, from its start (ffprobe, then ffmpeg: ~2 s on an idle machine)


class BlackHole:
    """A listener on 127.0.0.1 that accepts connections, holds them and never sends a byte."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self.server.getsockname()[1]}/stream"
        self.accepted: list[float] = []  # monotonic time of each connection
        self._held: list[socket.socket] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with self._cond:
                self._held.append(conn)
                self.accepted.append(time.monotonic())
                self._cond.notify_all()

    def wait_connections(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= n, timeout)

    def close(self) -> None:
        self.server.close()
        with self._cond:
            for conn in self._held:
                conn.close()
        self._thread.join(5)


@pytest.fixture()
def server(vtest: Path, tmp_path: Path) -> Iterator[RtspServer]:
    with serving(vtest, tmp_path / "rtsp_server.log") as srv:
        yield srv


@pytest.fixture()
def hole() -> Iterator[BlackHole]:
    bh = BlackHole()
    try:
        yield bh
    finally:
        bh.close()


def test_a_hung_camera_never_delays_another_cameras_open(server: RtspServer, hole: BlackHole) -> None:
    require_ffmpeg()
    stop = threading.Event()
    hung_q: FrameQueue[Frame] = FrameQueue(8)
    door_q: FrameQueue[Frame] = FrameQueue(32)
    hung_rec, door_rec = Recorder(), Recorder()
    hung = CaptureLoop("hung", lambda: FFmpegSource(hole.url, open_timeout=HANG), hung_q, stop,
                       hung_rec, stale_after=2.0, open_timeout=HANG + 10,
                       backoff=Backoff(initial=0.2, maximum=0.5))
    door = CaptureLoop("door", lambda: FFmpegSource(server.url, open_timeout=10, read_timeout=3),
                       door_q, stop, door_rec, stale_after=2.0, backoff=Backoff(initial=0.2, maximum=1.0))
    try:
        hung.start()
        assert hole.wait_connections(1, 10), "the hung camera never connected"
        started = time.monotonic()  # hung's open is in progress from here on
        door.start()
        frame = wait_frame(door_q, 0.0, FIRST_FRAME + 5)
        took = time.monotonic() - started
        assert frame.camera == "door" and frame.image.shape == (288, 384, 3)
        assert took < FIRST_FRAME, f"door's first frame took {took:.1f}s"
        assert hung_rec.counts.get("down", 0) == 0, "hung's first open ended before door's frame"

        # hung gives up after its open timeout and tries again, hanging again; door flows on.
        assert hung_rec.wait("down", 1, HANG + 5), "hung's open never timed out"
        assert hole.wait_connections(2, 10), "hung did not retry"  # one connection per try (ffprobe)
        retrying = time.monotonic()
        wait_frame(door_q, retrying, 5)
        assert hung_rec.counts.get("up", 0) == 0 and hung.is_alive() and door.is_alive()
        assert door_rec.counts.get("down", 0) == 0, "door lost its stream while hung retried"
    finally:
        stop.set()
        for loop in (hung, door):
            loop.join(HANG + 5)
            assert not loop.is_alive(), f"capture loop {loop.camera} did not stop"
