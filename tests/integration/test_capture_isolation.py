"""A camera whose open hangs must not delay another camera, whichever backend reads it.

Three capture loops in one process: camera "hung" points at a port that accepts the connection and
never answers (its RTSP open hangs until its timeout, again at every retry), camera "door" at the
real RTSP server, camera "file" at a short clip looped and paced in real time (OpenCV in-process:
it reopens the file at every pass). Network cameras run in child processes (ffmpeg/ffprobe, or
OpenCV's reader process), so door's first frame arrives while hung's open is in progress and the
file's reopens never wait for it. In-process, OpenCV's FFmpeg backend opens captures one at a time
under a process-wide lock: door's first frame took 14.9 s there, behind hung's open.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cut
from rtsp_helpers import Recorder, RtspServer, require_ffmpeg, serving, wait_frame

from stream_detector.capture import (
    Backoff,
    CaptureLoop,
    FFmpegSource,
    FrameQueue,
    FrameSource,
    OpenCVProcessSource,
    OpenCVSource,
)
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


BACKENDS: dict[str, type[FFmpegSource] | type[OpenCVProcessSource]] = {
    "ffmpeg": FFmpegSource, "opencv": OpenCVProcessSource}


@pytest.fixture(scope="module")
def clip(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(vtest, tmp_path_factory.mktemp("clip") / "loop.mp4", 2, 192, 144)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_hung_camera_never_delays_another_cameras_open_or_a_files_loop(
        server: RtspServer, hole: BlackHole, clip: Path, backend: str) -> None:
    require_ffmpeg()
    network = BACKENDS[backend]
    stop = threading.Event()
    hung_q: FrameQueue[Frame] = FrameQueue(8)
    door_q: FrameQueue[Frame] = FrameQueue(32)
    file_q: FrameQueue[Frame] = FrameQueue(1024)
    hung_rec, door_rec, file_rec = Recorder(), Recorder(), Recorder()

    def looped() -> FrameSource:
        return OpenCVSource(str(clip), realtime=True, loop=True)

    hung = CaptureLoop("hung", lambda: network(hole.url, open_timeout=HANG), hung_q, stop,
                       hung_rec, stale_after=2.0, open_timeout=HANG + 10,
                       backoff=Backoff(initial=0.2, maximum=0.5))
    door = CaptureLoop("door", lambda: network(server.url, open_timeout=10, read_timeout=3),
                       door_q, stop, door_rec, stale_after=2.0, backoff=Backoff(initial=0.2, maximum=1.0))
    file = CaptureLoop("file", looped, file_q, stop, file_rec, stale_after=2.0)
    try:
        file.start()
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

        # The 2 s clip looped about 7 times meanwhile, each pass a reopen: never a pause.
        times = [f.mono_time for f in file_q.get_all() if isinstance(f, Frame)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) > 100 and max(gaps) < 0.5, f"the looped file paused {max(gaps):.1f}s"
        assert file_rec.counts.get("down", 0) == 0
        stopping = time.monotonic()
    finally:
        stop.set()
        for loop in (hung, door, file):
            loop.join(HANG + 5)
            assert not loop.is_alive(), f"capture loop {loop.camera} did not stop"
    # hung's open was in progress: it was interrupted, not waited for
    readers = [t for t in threading.enumerate() if t.name.startswith("capture-hung")]
    for reader in readers:
        reader.join(2.0)
    assert not any(r.is_alive() for r in readers) and time.monotonic() - stopping < 3.0
