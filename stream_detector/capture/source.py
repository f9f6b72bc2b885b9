"""What every source of frames is: the FrameSource protocol, the base shared by the live sources
(name, pacing, stream time), the kinds of source a URI names, and sources that wrap another.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from stream_detector.credentials import redact


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

    def interrupt(self) -> None:
        """Make a pending open or read return now, if the source can (a child process is killed);
        called from another thread. A source decoded in-process cannot be, and ignores it."""
        ...

    @property
    def stream_time(self) -> float:
        """Seconds into the stream of the last grabbed frame (file position, or time since open)."""
        ...

    @property
    def finished(self) -> bool:
        """True once a finite source (a file played once) is exhausted: not a fault to retry."""
        ...


STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "rtp", "srt")
MAX_PACING_SLEEP = 1.0  # a timestamp jump in a file slows playback instead of freezing the source


def source_kind(uri: str) -> str:
    """"device" for a V4L2 index ("0"), "stream" for a network URL, else "file"."""
    if uri.isdigit():
        return "device"
    return "stream" if urlsplit(uri).scheme.lower() in STREAM_SCHEMES else "file"


class LiveSource(ABC):
    """What every live source shares: where it reads, how it is paced, and its position.

    Subclasses open, grab, retrieve and close; `_pos` (stream seconds) and `_finished` are theirs
    to keep current."""

    READ_TIMEOUT_MARGIN = 2.0  # stale_after (the capture loop) decides; the reader's timeout after

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        self.uri = uri
        self.kind = source_kind(uri)
        self.realtime = realtime
        self.loop = loop
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self._opened_at = 0.0  # monotonic time of open(): origin of live stream_time and of pacing
        self._pos = 0.0
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

    @abstractmethod
    def grab(self) -> bool: ...

    def interrupt(self) -> None:
        """In-process decoding cannot be stopped from another thread: its own timeouts end it."""

    @abstractmethod
    def retrieve(self) -> np.ndarray | None: ...

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def _pace(self) -> None:
        """A file played in realtime: wait until the grabbed frame's time has come."""
        if self.realtime and self.kind == "file":
            delay = self._opened_at + self._pos - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, MAX_PACING_SLEEP))


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

    def interrupt(self) -> None:
        self.inner.interrupt()

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
