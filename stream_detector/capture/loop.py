"""The live capture loop: one thread per camera reads its FrameSource into the frame queue.

It owns reconnects: a camera that is down at start-up, drops, hangs or changes resolution never
stops the daemon; the loop reports the state, waits with exponential backoff and tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stream_detector.capture.source import FrameSource
from stream_detector.errors import SourceError
from stream_detector.messages import Frame, StreamState

log = logging.getLogger("stream_detector.capture")  # the stage's: a camera's state changes


class Backoff:
    """Exponential delays with jitter, so cameras that dropped together do not retry in lockstep."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.2, rng: random.Random | None = None) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self.rng = rng or random.Random()
        self._base = initial

    def next(self) -> float:
        """The next delay: the base times 1 +/- jitter, never above `maximum`; the base then grows."""
        base = self._base
        self._base = min(self.maximum, base * self.factor)
        return min(self.maximum, base * (1.0 + self.rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self._base = self.initial


# Makes a connection's frame preparer (detect.FramePreparer): the model's input is computed in
# the capture thread, where one camera's per-frame work runs beside the others'.
Preparing = Callable[[], Callable[[np.ndarray], np.ndarray]]


class RateLimit:
    """Which frames to keep for a target rate, by stream time: skipped frames are decoded (H.264
    needs every one) but never converted or prepared. 0 keeps every frame."""

    def __init__(self, fps: float) -> None:
        self.gap = 1.0 / fps if fps > 0 else 0.0
        self.next_due = -math.inf

    def due(self, t: float) -> bool:
        if not self.gap:
            return True
        if t < self.next_due - 1e-3:
            return False
        # Keep the schedule while on time; after a stall restart it rather than burst.
        self.next_due = self.next_due + self.gap if t - self.next_due < self.gap else t + self.gap
        return True


class CaptureObserver(Protocol):
    """What a capture loop reports; production passes the metrics object."""

    def frame_read(self, camera: str) -> None: ...

    def frame_dropped(self, camera: str) -> None: ...

    def frames_skipped(self, camera: str, n: int) -> None: ...

    def stream_state(self, camera: str, up: bool) -> None: ...

    def reconnecting(self, camera: str) -> None: ...

    def resolution_changed(self, camera: str, width: int, height: int) -> None: ...


class FrameReceiver(Protocol):
    """Where the loop hands its frames (the frame queue, a main stream's history): put never blocks
    and says whether something was dropped.

    Stream-state messages go through it too, in order with the frames, and are never dropped.
    """

    def put(self, item: Frame | StreamState) -> bool: ...


@dataclass(frozen=True)
class _Ended:
    reason: str
    final: bool  # the source is exhausted or we are stopping: do not reconnect


class _Reader(threading.Thread):
    """One connection: opens the source, reads it and hands frames over.

    Only this thread touches the source, so the loop can abandon a connection whose open or read
    hangs without closing a capture under another thread's feet; the reader closes it when the
    blocked call returns (FFmpeg's timeouts see to that). Not a daemon: a daemon thread that leaves
    OpenCV while Python shuts down aborts the process, so exit waits for that call instead.
    """

    def __init__(self, camera: str, open_source: Callable[[], FrameSource], fps_limit: float,
                 clock: Callable[[], float]) -> None:
        super().__init__(name=f"capture-{camera}-reader", daemon=False)
        self.camera = camera
        self.open_source = open_source
        self.fps_limit = fps_limit
        self.clock = clock
        self.handoff: queue.Queue[Frame | _Ended] = queue.Queue(maxsize=2)
        self.abandoned = threading.Event()
        self.source: FrameSource | None = None
        self.opened = False
        self.last_progress = clock()  # start, end of open, or last grab: the loop's staleness clock

    def run(self) -> None:
        source: FrameSource | None = None
        try:
            source = self.source = self.open_source()
            if self.abandoned.is_set():
                raise SourceError("abandoned before it opened")
            source.open()
        except SourceError as exc:
            if source is not None:
                source.close()
            self._hand(_Ended(str(exc), final=False))
            return
        self.last_progress = self.clock()
        self.opened = True
        try:
            self._hand(self._read(source))
        finally:
            source.close()

    def _read(self, source: FrameSource) -> _Ended:
        index, rate = -1, RateLimit(self.fps_limit)
        while not self._cancelled():
            if not source.grab():
                if source.finished:
                    return _Ended("end of source", final=True)
                return _Ended("source returned no frame", final=False)
            wall, mono = time.time(), time.monotonic()
            self.last_progress = self.clock()
            index += 1
            t = source.stream_time
            if not rate.due(t):
                continue
            image = source.retrieve()
            if image is None:
                return _Ended("frame could not be decoded", final=False)
            self._hand(Frame(self.camera, index, t, wall, mono, image))
        return _Ended("stopped", final=True)

    def abandon(self) -> None:
        """Called by the loop: stop, and end a pending open or read now if the source can."""
        self.abandoned.set()
        if self.source is not None:
            self.source.interrupt()

    def _cancelled(self) -> bool:
        """Abandoned by the loop, or Python is exiting without anyone having set the stop event."""
        return self.abandoned.is_set() or not threading.main_thread().is_alive()

    def _hand(self, item: Frame | _Ended) -> None:
        while not self._cancelled():
            try:
                self.handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


class CaptureLoop(threading.Thread):
    """One camera's capture thread: frames into `queue`, state to `observer`, until `stop` is set.

    A stream is lost when the source returns no frame or nothing arrives for `stale_after` seconds;
    give sources a read timeout a little longer than that, so this loop decides and their timeout
    only frees the abandoned reader (FFmpeg may hand out one buffered frame when its timeout fires).
    Opening may take up to `open_timeout`: sources bound their own opens, this catches the calls
    they cannot interrupt (a DNS lookup, a stuck driver). Lost streams, and sources that cannot be
    opened, are retried forever with backoff. Each state change is logged once.
    """

    def __init__(self, camera: str, open_source: Callable[[], FrameSource], queue: FrameReceiver,
                 stop: threading.Event, observer: CaptureObserver, stale_after: float = 10.0,
                 fps_limit: float = 0.0, backoff: Backoff | None = None,
                 sleep: Callable[[float], object] | None = None,
                 clock: Callable[[], float] = time.monotonic, open_timeout: float = 30.0,
                 beat: Callable[[], None] | None = None, prepare: Preparing | None = None) -> None:
        super().__init__(name=f"capture-{camera}", daemon=True)
        if stale_after <= 0 or open_timeout <= 0 or fps_limit < 0:
            raise ValueError("stale_after and open_timeout must be > 0, fps_limit >= 0")
        self.camera = camera
        self.open_source = open_source
        self.queue = queue
        self.stop = stop
        self.observer = observer
        self.stale_after = stale_after
        self.open_timeout = open_timeout
        self.fps_limit = fps_limit
        self.backoff = backoff or Backoff()
        self.sleep = sleep or stop.wait
        self.clock = clock
        self.beat = beat or (lambda: None)  # the supervisor's heartbeat for this thread
        self.prepare = prepare
        self._poll = min(0.1, stale_after / 4)
        self.finished = False
        self._up: bool | None = None  # None until the first attempt succeeds or fails
        self._size: tuple[int, int] | None = None

    def run(self) -> None:
        self._loop()
        self.finished = True  # ended by design (source finished, stop set); a crash leaves False

    def _loop(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            self.beat()
            if attempt:
                self.observer.reconnecting(self.camera)
            attempt += 1
            ended = self._connect()
            if self.stop.is_set():
                break
            if ended.final:
                log.info("camera %s: %s, capture finished", self.camera, ended.reason)
                self._set_up(False, ended.reason)
                break
            delay = self.backoff.next()
            self._went_down(ended.reason, delay)
            self._wait(delay)

    def _wait(self, delay: float) -> None:
        """Back off, still beating: a long backoff is not a dead thread."""
        end = self.clock() + delay
        while (left := end - self.clock()) > 0 and not self.stop.is_set():
            self.sleep(min(left, 1.0))
            self.beat()

    def _connect(self) -> _Ended:
        reader = _Reader(self.camera, self.open_source, self.fps_limit, self.clock)
        # This thread prepares the frames while the reader decodes the next ones: two stages of one
        # camera on two cores. A new connection gets a new preparer (no motion across the gap).
        prepare = self.prepare() if self.prepare is not None else None
        last_index = -1  # frames in between were skipped by the scoring rate
        reader.start()
        try:
            while not self.stop.is_set():
                self.beat()
                try:
                    item = reader.handoff.get(timeout=self._poll)
                except queue.Empty:
                    if not reader.is_alive() and reader.handoff.empty():  # it raised: see its log
                        return _Ended("capture thread failed", final=False)
                    idle = self.clock() - reader.last_progress
                    if reader.opened and idle > self.stale_after:
                        return _Ended(f"no frame for {idle:.1f}s", final=False)
                    if not reader.opened and idle > self.open_timeout:
                        return _Ended(f"open did not return within {idle:.1f}s", final=False)
                    continue
                if isinstance(item, _Ended):
                    return item
                if prepare is not None:
                    try:
                        item = dataclasses.replace(item, prepared=prepare(item.image))
                    except Exception as exc:  # noqa: BLE001 - a bad frame ends this connection only
                        return _Ended(f"frame could not be prepared ({type(exc).__name__})", final=False)
                if item.index - last_index > 1:
                    self.observer.frames_skipped(self.camera, item.index - last_index - 1)
                last_index = item.index
                self._deliver(item)
            return _Ended("stopped", final=True)
        finally:
            reader.abandon()
            if self.stop.is_set():
                reader.join(timeout=1.0)  # close the source cleanly unless it hangs

    def _deliver(self, frame: Frame) -> None:
        height, width = frame.image.shape[:2]
        if self._up is not True:
            log.info("camera %s: stream up (%dx%d)", self.camera, width, height)
            self.backoff.reset()  # only once frames flow: open-then-fail must still back off
            self._set_up(True)
        if self._size != (width, height):
            if self._size is not None:
                log.info("camera %s: resolution changed from %dx%d to %dx%d", self.camera,
                         *self._size, width, height)
            self._size = (width, height)
            self.observer.resolution_changed(self.camera, width, height)
        self.observer.frame_read(self.camera)
        if not self.queue.put(frame):
            self.observer.frame_dropped(self.camera)

    def _went_down(self, reason: str, delay: float) -> None:
        if self._up is False:
            log.debug("camera %s: still down (%s), retrying in %.1fs", self.camera, reason, delay)
            return
        what = "stream lost" if self._up else "cannot open stream"
        log.warning("camera %s: %s (%s), reconnecting in %.1fs", self.camera, what, reason, delay)
        self._set_up(False, reason)

    def _set_up(self, up: bool, reason: str = "up") -> None:
        if self._up is not up:
            was, self._up = self._up, up
            self.observer.stream_state(self.camera, up)
            if up or was:  # a loss after frames flowed: the scorer must reset, an event end
                self.queue.put(StreamState(self.camera, up, reason, time.time(), time.monotonic()))
