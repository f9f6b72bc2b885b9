"""Snapshot frames: a camera that scores a low-resolution substream (`detect_source`) reads its main
stream here, for snapshots only, so an event's picture shows the full resolution.

The main stream runs on its own capture loop (loop.CaptureLoop: the same sources, reconnects with
backoff, abandoned hung reads) into a short, bounded history of recent frames with their capture
times; the snapshot takes the one nearest the peak frame. Nothing waits on it: a main stream that is
down only means snapshots fall back to the scored frame.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from stream_detector.capture.loop import Backoff, CaptureLoop
from stream_detector.capture.source import FrameSource
from stream_detector.messages import Frame, StreamState

log = logging.getLogger(__name__)

KEEP_SECONDS = 3.0  # history span: a start snapshot's peak is at most a few seconds old
KEEP_FPS = 4.0  # frames kept per second; the others are grabbed, never decoded to pixels
NEAR = 1.0  # seconds: a main frame further than this from the peak shows another moment


class FrameHistory:
    """The last `seconds` of kept frames, at most `seconds * fps + 1` of them (full-size frames are
    megabytes each). The capture loop's frame sink: `put` never blocks; read from other threads."""

    def __init__(self, seconds: float = KEEP_SECONDS, fps: float = KEEP_FPS) -> None:
        if seconds <= 0 or fps <= 0:
            raise ValueError("a frame history needs seconds > 0 and fps > 0")
        self.seconds = seconds
        self._frames: deque[Frame] = deque(maxlen=math.ceil(seconds * fps) + 1)
        self._lock = threading.Lock()

    def put(self, item: Frame | StreamState) -> bool:
        """Keep a frame, forget those older than `seconds` before it; state messages are ignored
        (frames kept before a loss still show their moment)."""
        if isinstance(item, Frame):
            with self._lock:
                self._frames.append(item)
                while self._frames[0].mono_time < item.mono_time - self.seconds:
                    self._frames.popleft()
        return True

    def nearest(self, mono_time: float, within: float = NEAR) -> Frame | None:
        """The kept frame captured nearest `mono_time` (monotonic), if one is within `within` s."""
        with self._lock:
            frames = list(self._frames)
        times = [f.mono_time for f in frames]
        i = bisect.bisect_left(times, mono_time)
        best = min(frames[max(0, i - 1):i + 1], key=lambda f: abs(f.mono_time - mono_time),
                   default=None)
        return best if best is not None and abs(best.mono_time - mono_time) <= within else None

    def oldest(self) -> float | None:
        """Capture time of the oldest kept frame (None: nothing kept)."""
        with self._lock:
            return self._frames[0].mono_time if self._frames else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


class StreamStateCallback(Protocol):
    """Where the main stream's state goes; production passes Metrics.snapshot_stream."""

    def __call__(self, camera: str, up: bool | None) -> None: ...


class _Observer:
    """The main stream's capture loop reports only up/down: frame counters belong to the scored
    stream, and the snapshot rescales to whatever size the main frame has."""

    def __init__(self, camera: str, state: StreamStateCallback) -> None:
        self.camera = camera
        self.state = state

    def frame_read(self, camera: str) -> None:
        pass

    def frame_dropped(self, camera: str) -> None:
        pass

    def frames_skipped(self, camera: str, n: int) -> None:
        pass

    def stream_state(self, camera: str, up: bool) -> None:
        self.state(self.camera, up)

    def reconnecting(self, camera: str) -> None:
        pass

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        pass


class MainStream:
    """One camera's main-stream reader: start, stop, and restart it if it died of a bug.

    Its capture loop is labelled "<camera>/main" in logs and thread names, so a lost main stream is
    never mistaken for the scored one.
    """

    def __init__(self, camera: str, open_source: Callable[[], FrameSource],
                 state: StreamStateCallback, *, stale_after: float = 10.0, history: FrameHistory | None = None,
                 fps: float = KEEP_FPS, backoff: Callable[[], Backoff] = Backoff,
                 beat: Callable[[], None] | None = None) -> None:
        self.camera = camera
        self.frames = history or FrameHistory(fps=fps)
        self.stop_event = threading.Event()
        self._state = state

        def make() -> CaptureLoop:
            return CaptureLoop(f"{camera}/main", open_source, self.frames, self.stop_event,
                               _Observer(camera, state), stale_after=stale_after, fps_limit=fps,
                               backoff=backoff(), beat=beat)

        self._make = make
        self.loop = make()

    def start(self) -> None:
        self._state(self.camera, False)  # the series exists (down) until the first frame
        self.loop.start()

    def supervise(self) -> bool:
        """Restart a loop that died of a bug (True when it did); one that ended by design stays."""
        if self.loop.is_alive() or self.loop.finished or self.stop_event.is_set():
            return False
        log.error("camera %s: main-stream thread died; restarting it", self.camera)
        self.loop = self._make()
        self.loop.start()
        return True

    def stop(self, join: bool = True, timeout: float = 3.0) -> None:
        self.stop_event.set()
        if join:
            self.loop.join(timeout)
        self._state(self.camera, None)
