"""Video sources: reading files for fitting/scoring, the FrameSource protocol and its OpenCV source.

The live loop that reads a FrameSource into the frame queue and owns reconnects is in camera.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # 0 when the container does not say
    frames: int  # container's count; may be approximate, decode to be sure


class FrameSource(Protocol):
    """Anything that yields BGR frames: a file, a camera URL, a USB device or a test fake.

    grab/retrieve are split so a rate-limited reader can skip frames without converting them; all
    calls for one source come from one thread.
    """

    def open(self) -> None:
        """Connect or open; raise SourceError with a one-line reason if that is impossible."""
        ...

    def grab(self) -> bool:
        """Advance to the next frame without converting it; False at the end or on failure."""
        ...

    def retrieve(self) -> np.ndarray | None:
        """The grabbed frame as HxWx3 uint8 BGR, or None if it cannot be decoded."""
        ...

    def read(self) -> np.ndarray | None:
        """Next frame, or None when the stream ended or failed (the caller decides to reconnect)."""
        ...

    def close(self) -> None: ...

    @property
    def stream_time(self) -> float:
        """Seconds into the stream of the last grabbed frame (file position, or time since open)."""
        ...

    @property
    def finished(self) -> bool:
        """True once a finite source (a file played once) is exhausted: not a fault to retry."""
        ...


def expand_sources(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their video files in name order. Missing paths are a SourceError."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise SourceError(f"{path}: folder holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    return out


def open_capture(path: Path) -> cv2.VideoCapture:
    """Open a video file with OpenCV's FFmpeg backend, or raise a one-line SourceError."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{path}: not a readable video")
    return cap


def video_info(path: Path) -> VideoInfo:
    cap = open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(frame.shape[1], frame.shape[0], fps if 0 < fps < 1000 else 0.0, count)
    finally:
        cap.release()


def iter_frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decode every frame of a file in order (BGR uint8). The first frame must decode."""
    cap = open_capture(path)
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
        if n == 0:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
    finally:
        cap.release()


# --- Live sources ---------------------------------------------------------------------------------

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "rtp", "srt")
MAX_PACING_SLEEP = 1.0  # a timestamp jump in a file slows playback instead of freezing the source


def source_kind(uri: str) -> str:
    """"device" for a V4L2 index ("0"), "stream" for a network URL, else "file"."""
    if uri.isdigit():
        return "device"
    return "stream" if urlsplit(uri).scheme.lower() in STREAM_SCHEMES else "file"


def redact(uri: str) -> str:
    """The URI with any password replaced, so credentials never reach logs or error messages."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class OpenCVSource:
    """A camera URL, a USB/V4L2 device index ("0") or a video file, read with OpenCV.

    Streams go through FFmpeg with open and read timeouts, so a dead or hung camera makes grab()
    fail instead of blocking forever. For RTSP, OpenCV asks FFmpeg to prefer interleaved TCP
    (rtsp_flags=prefer_tcp) unless OPENCV_FFMPEG_CAPTURE_OPTIONS is set: no UDP loss or NAT trouble.
    Files can be paced at their own frame rate (`realtime`) and looped, so a clip can stand in
    for a camera; their stream_time keeps growing across loops.
    """

    READ_TIMEOUT_MARGIN = 2.0  # the capture loop's stale_after decides; FFmpeg's timeout comes after

    @classmethod
    def from_config(cls, camera: CameraConfig) -> OpenCVSource:
        return cls(camera.source, realtime=camera.realtime, loop=camera.loop,
                   read_timeout=camera.stale_after + cls.READ_TIMEOUT_MARGIN)

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        self.uri = uri
        self.kind = source_kind(uri)
        self.realtime = realtime
        self.loop = loop
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self._cap: cv2.VideoCapture | None = None
        self._opened_at = 0.0  # monotonic time of open(): origin of live stream_time and of pacing
        self._offset = 0.0  # looped files: length of the passes already played
        self._pos = 0.0
        self._fps = 0.0
        self._pass_frames = 0
        self._finished = False

    @property
    def name(self) -> str:
        return redact(self.uri)

    @property
    def stream_time(self) -> float:
        return self._pos

    @property
    def finished(self) -> bool:
        return self._finished

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
            return open_capture(Path(self.uri))
        if self.kind == "device":
            cap = cv2.VideoCapture(int(self.uri), cv2.CAP_V4L2)
            why = "missing, busy or not permitted"
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
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
        if self.realtime and self.kind == "file":
            delay = self._opened_at + self._pos - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, MAX_PACING_SLEEP))
        return True

    def retrieve(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.retrieve()
        except cv2.error:
            return None
        return frame if ok and frame is not None else None

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

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
            self._cap = open_capture(Path(self.uri))
        except SourceError:
            return  # the file vanished: grab() reports the end
        self._pass_frames = 0


def _grab(cap: cv2.VideoCapture) -> bool:
    try:
        return bool(cap.grab())
    except cv2.error:
        return False


class FrameFilter:
    """A FrameSource that wraps another and changes its frames: subclasses override `retrieve`."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner

    def open(self) -> None:
        self.inner.open()

    def grab(self) -> bool:
        return self.inner.grab()

    def retrieve(self) -> np.ndarray | None:
        return self.inner.retrieve()

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def close(self) -> None:
        self.inner.close()

    @property
    def stream_time(self) -> float:
        return self.inner.stream_time

    @property
    def finished(self) -> bool:
        return self.inner.finished


class ResizedSource(FrameFilter):
    """A FrameSource whose frames are resized right after decoding (a camera's `width`/`height`).

    Cuts the memory and copying of high-resolution streams before the queue; event boxes and
    snapshots are then in these pixels.
    """

    def __init__(self, inner: FrameSource, width: int, height: int) -> None:
        super().__init__(inner)
        self.size = (width, height)

    def retrieve(self) -> np.ndarray | None:
        frame = self.inner.retrieve()
        if frame is None or (frame.shape[1], frame.shape[0]) == self.size:
            return frame
        try:
            return cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        except (cv2.error, MemoryError):  # a frame that cannot be resized counts as undecodable
            return None
