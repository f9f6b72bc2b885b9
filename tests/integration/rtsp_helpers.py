"""rtsp_server.py as a child process for tests: a camera URL that can die, hang and come back; and
what capture-loop tests share (an observer that counts, waiting for a frame).

The server needs GStreamer's introspection bindings, which the system Python has and venvs lack;
GI_PYTHON names that interpreter.
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stream_detector.capture import FrameQueue
from stream_detector.messages import Frame

GI_PYTHON = os.environ.get("GI_PYTHON", "/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")
GI_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_gi_python() -> str:
    """Fail, never skip: without the bindings no test can show that reconnects work."""
    try:
        done = subprocess.run([GI_PYTHON, "-c", GI_CHECK], capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        pytest.fail(f"{GI_PYTHON} not found: the RTSP test server needs Debian's python3 with "
                    "python3-gi and gir1.2-gst-rtsp-server-1.0 (set GI_PYTHON to use another)")
    if done.returncode != 0:
        pytest.fail(f"{GI_PYTHON} cannot load GStreamer's RTSP server: install python3-gi and "
                    f"gir1.2-gst-rtsp-server-1.0 ({done.stderr.strip().splitlines()[-1:]})")
    return GI_PYTHON


def require_ffmpeg() -> None:
    """Fail, never skip: FFmpeg capture is what these tests are about, and ./dev setup installs it."""
    missing = [name for name in ("ffmpeg", "ffprobe") if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: install Debian's ffmpeg package "
                    "(./dev setup does)")


class RtspServer:
    """rtsp_server.py as a child process on a fixed port, so a restart is the same camera URL."""

    def __init__(self, clip: Path, logfile: Path, auth: str = "") -> None:
        """`auth` USER:PASSWORD: the server asks for them (HTTP Basic), as a real camera does."""
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/test"
        self.clip, self.logfile, self.auth = clip, logfile, auth
        self.size = (384, 288)  # what it streams; a restart may change it
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [GI_PYTHON, str(SERVER), "--port", str(self.port), "--file", str(self.clip),
                 "--width", str(self.size[0]), "--height", str(self.size[1]),
                 *(["--auth", self.auth] if self.auth else [])],
                stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout) and self.proc.stdout.readline().strip() == b"READY"
        if not ready:
            self.kill()
            pytest.fail(f"RTSP server did not start on port {self.port}: "
                        f"{self.logfile.read_text(errors='replace')[-2000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # works on a SIGSTOPped process too
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@contextmanager
def serving(clip: Path, logfile: Path) -> Iterator[RtspServer]:
    """An RtspServer streaming `clip`, killed however the test ends (fixtures wrap it)."""
    require_gi_python()
    server = RtspServer(clip, logfile)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Recorder:
    """Counts what the loop reports and lets the test wait for a count."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._cond = threading.Condition()

    def _add(self, kind: str) -> None:
        with self._cond:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self._cond.notify_all()

    def frame_read(self, camera: str) -> None:
        self._add("read")

    def frame_dropped(self, camera: str) -> None:
        self._add("dropped")

    def frames_skipped(self, camera: str, n: int) -> None:
        pass

    def stream_state(self, camera: str, up: bool) -> None:
        self._add("up" if up else "down")

    def reconnecting(self, camera: str) -> None:
        self._add("reconnecting")

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        self._add(f"size {width}x{height}")

    def wait(self, kind: str, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.counts.get(kind, 0) >= n, timeout)


def wait_frame(q: FrameQueue[Frame], after: float, timeout: float) -> Frame:
    """The first frame captured after monotonic time `after`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        frame = q.get(timeout=left)
        if isinstance(frame, Frame) and frame.mono_time > after:  # not a stream-state message
            return frame
    pytest.fail(f"no frame within {timeout}s")
