"""The inference worker: one thread scores every camera's queued frames and turns scores into events.

It does no disk or network I/O: events (with their peak frame) and scores go to the emitter through
`emit`. A fault in one camera's scoring is logged and counted and that camera's scorer is rebuilt;
the worker itself goes on. Stream losses arrive in the frame queue, in order with the frames.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from stream_detector.errors import SourceError
from stream_detector.messages import Event, EventOut, Frame, FrameScore, Peak, ScoreOut, StreamState

log = logging.getLogger("stream_detector.inference")

Item = Frame | StreamState


class Scorer(Protocol):
    def reset(self) -> None: ...

    def score(self, frames: list[Frame]) -> list[FrameScore]: ...


class Tracker(Protocol):
    @property
    def active(self) -> Event | None: ...

    def observe(self, s: FrameScore) -> list[Event]: ...

    def close(self, wall_time: float, stream_time: float, reason: str = ...) -> list[Event]: ...


class Inbox(Protocol):
    """A camera's frame queue as the worker sees it."""

    def get_all(self) -> list[Item]: ...

    def __len__(self) -> int: ...


class WorkerMetrics(Protocol):
    def queue_depth(self, camera: str, n: int) -> None: ...

    def scored(self, camera: str, score: float, latency_s: float) -> None: ...

    def inference(self, device: str, seconds: float) -> None: ...

    def model_state(self, camera: str, loaded: bool) -> None: ...

    def scoring_failed(self, camera: str) -> None: ...


@dataclass
class Lane:
    """One camera as the worker sees it. `make_scorer(width, height)` raises SourceError when the
    source's size does not fit the camera's model."""

    name: str
    queue: Inbox
    tracker: Tracker
    make_scorer: Callable[[int, int], Scorer]
    device: str = "cpu"
    scorer: Scorer | None = None
    size: tuple[int, int] | None = None
    unfit: bool = False
    timeline: float = 0.0  # the camera's time of the last scored frame; never goes back
    offset: float = 0.0  # added to a frame's stream time to put it on the timeline
    last_mono: float | None = None
    peak: Peak | None = field(default=None, repr=False)


class InferenceWorker(threading.Thread):
    """Scores all lanes, oldest item first per lane; sleeps on the queues' shared condition.

    Lanes are added and removed through `add`/`remove`, applied by this thread between batches,
    so no lock is held around scoring and a reload never stalls it.
    """

    def __init__(self, cond: threading.Condition, emit: Callable[[EventOut | ScoreOut], None],
                 metrics: WorkerMetrics, stop: threading.Event,
                 beat: Callable[[], None] = lambda: None, idle_wait: float = 0.5,
                 chunk: int = 32) -> None:
        super().__init__(name="inference", daemon=True)
        self.cond = cond
        self.emit = emit
        self.metrics = metrics
        self.stop = stop
        self.beat = beat
        self.idle_wait = idle_wait
        self.chunk = chunk
        self._lanes: dict[str, Lane] = {}
        self._commands: list[tuple[str, Lane | str]] = []

    def add(self, lane: Lane) -> None:
        with self.cond:
            self._commands.append(("add", lane))
            self.cond.notify_all()

    def remove(self, name: str) -> None:
        """Stop scoring a camera; its open event ends ("camera removed")."""
        with self.cond:
            self._commands.append(("remove", name))
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def run(self) -> None:
        while True:
            self.beat()
            with self.cond:
                self.cond.wait_for(self._has_work, self.idle_wait)
                commands, self._commands = self._commands, []
                stopping = self.stop.is_set()
            for kind, arg in commands:
                if kind == "add":
                    assert isinstance(arg, Lane)
                    self._lanes[arg.name] = arg
                else:
                    lane = self._lanes.pop(str(arg), None)
                    if lane is not None:
                        self._close(lane, "camera removed")
            for lane in list(self._lanes.values()):
                self.metrics.queue_depth(lane.name, len(lane.queue))
                try:
                    self._handle(lane, lane.queue.get_all())
                except Exception:  # noqa: BLE001 - one camera's fault must not end the worker
                    log.exception("camera %s: scoring failed; rebuilding its scorer", lane.name)
                    self.metrics.scoring_failed(lane.name)
                    lane.scorer, lane.size = None, None  # rebuilt at the next frame, windows reset
            if stopping:
                for lane in self._lanes.values():
                    self._close(lane, "stopped")
                return

    def _has_work(self) -> bool:
        return (self.stop.is_set() or bool(self._commands)
                or any(len(lane.queue) for lane in self._lanes.values()))

    def _handle(self, lane: Lane, items: list[Item]) -> None:
        """Frames in runs between stream-state messages, each handled where it was queued."""
        run: list[Frame] = []
        for item in items:
            if isinstance(item, Frame):
                run.append(item)
                continue
            self._score(lane, run)
            run = []
            if not item.up:
                if lane.scorer is not None:
                    lane.scorer.reset()  # its past is gone: windows must not span the gap
                self._close(lane, f"stream lost: {item.reason}", item.wall_time)
        self._score(lane, run)

    def _score(self, lane: Lane, frames: list[Frame]) -> None:
        if not frames:
            return
        h, w = frames[-1].image.shape[:2]
        if lane.size != (w, h) and not self._rebuild(lane, w, h):
            return
        if lane.scorer is None:
            return
        frames = [self._on_timeline(lane, f) for f in frames if f.image.shape[:2] == (h, w)]
        for i in range(0, len(frames), self.chunk):  # bounded calls: the heartbeat keeps beating
            self.beat()
            self._score_chunk(lane, frames[i:i + self.chunk])

    def _score_chunk(self, lane: Lane, frames: list[Frame]) -> None:
        assert lane.scorer is not None
        started = time.perf_counter()
        scores = lane.scorer.score(frames)
        self.metrics.inference(lane.device, time.perf_counter() - started)
        now = time.monotonic()
        for f, s in zip(frames, scores):
            self.metrics.scored(lane.name, s.score, now - f.mono_time)
            events = lane.tracker.observe(s)
            if lane.tracker.active is not None and (lane.peak is None or s.score >= lane.peak.score):
                lane.peak = Peak(s.score, f.image, s.cells, s.box)
            for ev in events:
                self._out(lane, ev, f.mono_time)
        if scores:
            self.emit(ScoreOut(lane.name, scores[-1].score))

    def _rebuild(self, lane: Lane, w: int, h: int) -> bool:
        """First frame, a resolution change or a fault: a new scorer, or the camera is unfit."""
        lane.size = (w, h)
        try:
            lane.scorer = lane.make_scorer(w, h)
        except SourceError as exc:
            if not lane.unfit:
                log.error("%s; its frames are not scored", exc)
            lane.unfit, lane.scorer = True, None
            self.metrics.model_state(lane.name, False)
            return False
        lane.unfit = False
        self.metrics.model_state(lane.name, True)
        return True

    def _on_timeline(self, lane: Lane, f: Frame) -> Frame:
        """Stream time restarts at 0 after a reconnect; the camera's timeline must not, or hysteresis
        (cooldown, update interval) would wait for the old time to come round again."""
        t = f.stream_time + lane.offset
        if t < lane.timeline:
            gap = 0.0 if lane.last_mono is None else max(0.0, f.mono_time - lane.last_mono)
            lane.offset = lane.timeline + gap - f.stream_time
            t = f.stream_time + lane.offset
        lane.timeline, lane.last_mono = t, f.mono_time
        return f if t == f.stream_time else dataclasses.replace(f, stream_time=t)

    def _close(self, lane: Lane, reason: str, wall: float | None = None) -> None:
        for ev in lane.tracker.close(time.time() if wall is None else wall, lane.timeline, reason):
            self._out(lane, ev, time.monotonic())

    def _out(self, lane: Lane, ev: Event, captured: float) -> None:
        self.emit(EventOut(ev, lane.peak, captured))
        if ev.type == "end":
            lane.peak = None
