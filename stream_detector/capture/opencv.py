"""The OpenCV sources: a USB/V4L2 device or a video file decoded in the daemon, and a network
camera decoded by OpenCV in a reader process of its own (opencv_reader.py).
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture.child import ChildSource
from stream_detector.capture.files import DECODE_THREADS, open_capture
from stream_detector.capture.source import LiveSource, source_kind
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError

READER = Path(__file__).with_name("opencv_reader.py")
HEADER = struct.Struct("<II")  # as opencv_reader.py writes it: width, height


def opencv_source(camera: CameraConfig) -> OpenCVSource | OpenCVProcessSource:
    """A camera read with OpenCV: network streams in a reader process, files and devices here."""
    cls = OpenCVProcessSource if source_kind(camera.source) == "stream" else OpenCVSource
    return cls(camera.source, realtime=camera.realtime, loop=camera.loop,
               read_timeout=camera.stale_after + LiveSource.READ_TIMEOUT_MARGIN)


class OpenCVSource(LiveSource):
    """A USB/V4L2 device index ("0"), a video file or (in tests) a camera URL, read with OpenCV
    in this process.

    Streams go through FFmpeg with open and read timeouts, so a dead or hung camera makes grab()
    fail instead of blocking forever; but OpenCV opens FFmpeg captures one at a time in a process,
    so the daemon reads network cameras with OpenCVProcessSource instead. For RTSP, OpenCV asks
    FFmpeg to prefer interleaved TCP (rtsp_flags=prefer_tcp) unless OPENCV_FFMPEG_CAPTURE_OPTIONS
    is set. Files can be paced at their own frame rate (`realtime`) and looped, so a clip can stand
    in for a camera; their stream_time keeps growing across loops.
    """

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        super().__init__(uri, realtime, loop, open_timeout, read_timeout)
        self._cap: cv2.VideoCapture | None = None
        self._offset = 0.0  # looped files: length of the passes already played
        self._fps = 0.0
        self._pass_frames = 0

    def open(self) -> None:
        self.close()
        self._cap = self._open_capture()
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else 0.0
        self._opened_at = time.monotonic()
        self._offset = self._pos = 0.0
        self._pass_frames = 0
        self._finished = False

    def _open_capture(self) -> cv2.VideoCapture:
        if self.kind == "file":
            return open_capture(Path(self.uri), DECODE_THREADS)
        if self.kind == "device":
            cap = cv2.VideoCapture(int(self.uri), cv2.CAP_V4L2)
            why = "missing, busy or not permitted"
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000),
                      cv2.CAP_PROP_N_THREADS, DECODE_THREADS]
            cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
            why = f"refused, unreachable within {self.open_timeout:g}s, or not a video stream"
        if not cap.isOpened():
            cap.release()
            what = f"video device {self.uri}" if self.kind == "device" else self.name
            raise SourceError(f"{what}: cannot open ({why})")
        return cap

    def grab(self) -> bool:
        if self._cap is None or self._finished:
            return False
        ok = _grab(self._cap)
        if not ok and self.kind == "file" and self.loop and self._pass_frames > 0:
            self._restart()
            ok = self._cap is not None and _grab(self._cap)
        if not ok:
            # A pass that delivered frames has ended; a pass with none, or a looped file that can
            # no longer be reopened, is a fault the capture loop reports and retries.
            self._finished = self.kind == "file" and not self.loop and self._pass_frames > 0
            return False
        self._pass_frames += 1
        self._pos = self._position()
        self._pace()
        return True

    def retrieve(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.retrieve()
        except cv2.error:
            return None
        return frame if ok and frame is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _position(self) -> float:
        if self.kind != "file":
            return time.monotonic() - self._opened_at
        assert self._cap is not None
        pos = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
        if pos <= 0.0 and self._pass_frames > 1 and self._fps:  # container without timestamps
            pos = (self._pass_frames - 1) / self._fps
        return self._offset + pos

    def _restart(self) -> None:
        """Start a looped file again; reopening works for every container, seeking does not."""
        self._offset = self._pos + (1.0 / self._fps if self._fps else 0.0)
        self.close()
        try:
            self._cap = open_capture(Path(self.uri), DECODE_THREADS)
        except SourceError:
            return  # the file vanished: grab() reports the end
        self._pass_frames = 0


def _grab(cap: cv2.VideoCapture) -> bool:
    try:
        return bool(cap.grab())
    except cv2.error:
        return False


class OpenCVProcessSource(ChildSource):
    """A network camera decoded by OpenCV in a reader process of its own (opencv_reader.py): its
    open holds no lock another camera waits on, and `interrupt` ends a hung open at once. The URL
    reaches the reader on a pipe, never on its command line. A frame's size may change mid-stream
    (the capture loop rebuilds the camera's scorer); stream_time is the time since open."""

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        super().__init__(uri, realtime, loop, open_timeout, read_timeout)
        self._frame: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self._bad = False  # the reader could not decode the grabbed frame

    def _program(self) -> str:
        return "the OpenCV reader"

    def open(self) -> None:
        self.close()
        self._finished = False
        spec = {"url": self.uri, "open_timeout": self.open_timeout,
                "read_timeout": self.read_timeout, "threads": DECODE_THREADS}
        # -I: the reader imports OpenCV and numpy from this interpreter's site only, no
        # PYTHON* variables, no current directory on its path.
        self._spawn(lambda fd: [sys.executable, "-I", str(READER), str(fd)],
                    json.dumps(spec).encode())
        # The reader's own open timeout decides first; this one is for a reader that hangs.
        self._pending = self._first_frame(self._next, self.open_timeout + 2.0)

    def _next(self, timeout: float) -> np.ndarray | None:
        """The next frame from the reader; an empty array for one it could not decode; None when
        it stopped or sent nothing within `timeout`."""
        head = self._read_exact(HEADER.size, timeout)
        if head is None:
            return None
        width, height = HEADER.unpack(head)
        if width == 0:
            return np.empty((0, 0, 3), np.uint8)
        if not (0 < width <= 16384 and 0 < height <= 16384):
            return None
        data = self._read_exact(width * height * 3, timeout)
        return None if data is None else np.frombuffer(data, np.uint8).reshape(height, width, 3)

    def grab(self) -> bool:
        if self._proc is None:
            return False
        frame, self._pending = self._pending, None
        if frame is None:
            frame = self._next(self.read_timeout)
        if frame is None:
            return False
        self._frame = frame
        self._pos = time.monotonic() - self._opened_at
        return True

    def retrieve(self) -> np.ndarray | None:
        if self._frame is None or self._frame.size == 0:
            return None
        return self._frame

    def close(self) -> None:
        self._frame = self._pending = None
        super().close()
