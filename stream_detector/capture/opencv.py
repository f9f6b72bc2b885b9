"""The OpenCV source: a camera URL, a USB/V4L2 device or a video file decoded in-process."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture.files import DECODE_THREADS, open_capture
from stream_detector.capture.source import LiveSource
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError


class OpenCVSource(LiveSource):
    """A camera URL, a USB/V4L2 device index ("0") or a video file, read with OpenCV.

    Streams go through FFmpeg with open and read timeouts, so a dead or hung camera makes grab()
    fail instead of blocking forever. For RTSP, OpenCV asks FFmpeg to prefer interleaved TCP
    (rtsp_flags=prefer_tcp) unless OPENCV_FFMPEG_CAPTURE_OPTIONS is set: no UDP loss or NAT trouble.
    Files can be paced at their own frame rate (`realtime`) and looped, so a clip can stand in
    for a camera; their stream_time keeps growing across loops.
    """

    @classmethod
    def from_config(cls, camera: CameraConfig) -> OpenCVSource:
        return cls(camera.source, realtime=camera.realtime, loop=camera.loop,
                   read_timeout=camera.stale_after + cls.READ_TIMEOUT_MARGIN)

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
