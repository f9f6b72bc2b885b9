"""The inference worker: one thread scores every camera's queued frames and turns scores into events.

It does no disk or network I/O: events (with their peak frame) and scores go to the emitter through
`emit`. A fault in one camera's scoring is logged and counted and that camera's scorer is rebuilt;
the worker itself goes on. Stream losses and scene changes (another model, a tampered picture)
arrive in the frame queue, in order with the frames.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream_detector.detect.events import EventPolicy
from stream_detector.errors import SourceError
from stream_detector.messages import (
    Event,
    EventOut,
    Frame,
    FrameScore,
    Peak,
    SceneChange,
    ScoreOut,
    StreamState,
)
from stream_detector.model import CALL_FRAMES, STREAM_FRAMES

log = logging.getLogger(__name__)

Item = Frame | StreamState | SceneChange
TAMPERED = "camera_tampered"  # the kind of event raised while the picture is not the scene


class Scorer(Protocol):
    """One camera's scorer. Scorers with the same non-None `batch_key` (one loaded model) are
    scored in one call by `score_many`, which leaves every scorer unchanged when it raises."""

    batch_key: object

    def reset(self) -> None: ...

    def score(self, frames: list[Frame]) -> list[FrameScore]: ...

    def score_many(self, scorers: list[Any], frames: list[list[Frame]]) -> list[list[FrameScore]]: ...


class Tracker(Protocol):
    @property
    def active(self) -> Event | None: ...

    def observe(self, s: FrameScore) -> list[Event]: ...

    def close(self, wall_time: float, stream_time: float, reason: str = ...) -> list[Event]: ...

    def retune(self, policy: EventPolicy) -> None: ...


class Models(Protocol):
    """A camera's models as the worker switches between them (frame_scorer.CameraModels)."""

    active: str

    def activate(self, name: str) -> EventPolicy: ...

    def policy(self) -> EventPolicy: ...

    def replace(self, name: str, model: Any) -> bool: ...


class Inbox(Protocol):
    """A camera's frame queue as the worker sees it."""

    def get_all(self) -> list[Item]: ...

    def __len__(self) -> int: ...


class WorkerMetrics(Protocol):
    def queue_depth(self, camera: str, n: int) -> None: ...

    def scored(self, camera: str, score: float, latency_s: float) -> None: ...

    def inference(self, device: str, seconds: float, frames: int = ...) -> None: ...

    def model_state(self, camera: str, loaded: bool) -> None: ...

    def scoring_failed(self, camera: str) -> None: ...

    def active_model(self, camera: str, model: str) -> None: ...

    def tampered(self, camera: str, on: bool) -> None: ...


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
    models: Models | None = None  # None: one model, never switched
    tampered: Event | None = None  # the open camera_tampered event: anomaly events wait meanwhile


class InferenceWorker(threading.Thread):
    """Scores all lanes, oldest item first per lane; sleeps on the queues' shared condition.

    Lanes are added and removed through `add`/`remove`, applied by this thread between batches,
    so no lock is held around scoring and a reload never stalls it.
    """

    def __init__(self, cond: threading.Condition, emit: Callable[[EventOut | ScoreOut], None],
                 metrics: WorkerMetrics, stop: threading.Event,
                 beat: Callable[[], None] = lambda: None, idle_wait: float = 0.5,
                 chunk: int = CALL_FRAMES, linger: float = 0.005) -> None:
        super().__init__(name="inference", daemon=True)
        self.cond = cond
        self.emit = emit
        self.metrics = metrics
        self.stop = stop
        self.beat = beat
        self.idle_wait = idle_wait
        self.chunk = chunk
        self.linger = linger  # once woken, how long to wait for the other cameras' frames
        self._lanes: dict[str, Lane] = {}
        self._commands: list[tuple[str, Any]] = []  # add (Lane), remove (name), swap
        # A removed camera's timeline (time, monotonic time of its last frame): a camera that comes
        # back (restarted by a reload) continues it, as after a reconnect.
        self._timelines: dict[str, tuple[float, float | None]] = {}

    def add(self, lane: Lane) -> None:
        with self.cond:
            self._commands.append(("add", lane))
            self.cond.notify_all()

    def remove(self, name: str) -> None:
        """Stop scoring a camera; its open event ends ("camera removed")."""
        with self.cond:
            self._commands.append(("remove", name))
            self.cond.notify_all()

    def swap(self, name: str, model: str, loaded: Any) -> None:
        """Camera `name` scores its model `model` with `loaded` (a tuned version) from its next
        frame: capture goes on, an open event carries over."""
        with self.cond:
            self._commands.append(("swap", (name, model, loaded)))
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def run(self) -> None:
        while True:
            self.beat()
            with self.cond:
                if self.cond.wait_for(self._has_work, self.idle_wait) and self.linger > 0:
                    self.cond.wait_for(self._every_lane_has_frames, self.linger)  # fuller calls
                commands, self._commands = self._commands, []
                stopping = self.stop.is_set()
            for kind, arg in commands:
                if kind == "add":
                    assert isinstance(arg, Lane)
                    if arg.name in self._timelines:
                        arg.timeline, arg.last_mono = self._timelines.pop(arg.name)
                    self._lanes[arg.name] = arg
                elif kind == "swap":
                    lane = self._lanes.get(arg[0])
                    if lane is not None and lane.models is not None \
                            and lane.models.replace(arg[1], arg[2]):  # the one scoring now
                        lane.tracker.retune(lane.models.policy())
                        lane.scorer, lane.size = None, None  # rebuilt at the next frame
                else:
                    lane = self._lanes.pop(str(arg), None)
                    if lane is not None:
                        self._close(lane, "camera removed", tamper_too=True)
                        self._timelines[lane.name] = (lane.timeline, lane.last_mono)
            self._serve(list(self._lanes.values()))
            if stopping:
                for lane in self._lanes.values():
                    self._close(lane, "stopped", tamper_too=True)
                return

    def _every_lane_has_frames(self) -> bool:
        return self.stop.is_set() or bool(self._commands) or all(
            len(lane.queue) for lane in self._lanes.values())

    def _has_work(self) -> bool:
        return (self.stop.is_set() or bool(self._commands)
                or any(len(lane.queue) for lane in self._lanes.values()))

    def _serve(self, lanes: list[Lane]) -> None:
        """Every lane's queued items, in order per lane. The frames each lane has before its first
        stream-state message are scored across cameras, several in one model call; what follows
        such a message (rare: a stream went down or up) is handled lane by lane."""
        ready: list[tuple[Lane, list[Frame]]] = []
        rest: list[tuple[Lane, list[Item]]] = []
        for lane in lanes:
            self.metrics.queue_depth(lane.name, len(lane.queue))
            items = lane.queue.get_all()
            cut = next((i for i, x in enumerate(items) if not isinstance(x, Frame)), len(items))
            frames = self._guarded(lane, self._scorable, lane, items[:cut])
            if frames:
                ready.append((lane, frames))
            if cut < len(items):
                rest.append((lane, items[cut:]))
        groups: dict[object, list[tuple[Lane, list[Frame]]]] = {}
        for lane, frames in ready:
            key = getattr(lane.scorer, "batch_key", None)
            groups.setdefault(id(lane) if key is None else key, []).append((lane, frames))
        for members in groups.values():
            self._score_group(members)
        for lane, items in rest:
            self._guarded(lane, self._handle, lane, items)

    def _guarded(self, lane: Lane, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one camera's step; a fault is logged and counted, and that camera's scorer rebuilt."""
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - one camera's fault must not end the worker
            log.exception("camera %s: scoring failed; rebuilding its scorer", lane.name)
            self.metrics.scoring_failed(lane.name)
            lane.scorer, lane.size = None, None  # rebuilt at the next frame, windows reset
            return None

    def _handle(self, lane: Lane, items: list[Item]) -> None:
        """Frames in runs between stream-state messages, each handled where it was queued."""
        run: list[Frame] = []
        for item in items:
            if isinstance(item, Frame):
                run.append(item)
                continue
            self._score_group([(lane, self._scorable(lane, run))])
            run = []
            if isinstance(item, SceneChange):
                self._scene(lane, item)
            elif not item.up:
                if lane.scorer is not None:
                    lane.scorer.reset()  # its past is gone: windows must not span the gap
                self._close(lane, f"stream lost: {item.reason}", item.wall_time)
        self._score_group([(lane, self._scorable(lane, run))])

    def _scorable(self, lane: Lane, frames: list[Frame]) -> list[Frame]:
        """The frames this lane's scorer can take, on the camera's timeline; [] if it has none."""
        if not frames:
            return []
        h, w = frames[-1].image.shape[:2]
        if lane.size != (w, h) and not self._rebuild(lane, w, h):
            return []
        if lane.scorer is None:
            return []
        return [self._on_timeline(lane, f) for f in frames if f.image.shape[:2] == (h, w)]

    def _score_group(self, members: list[tuple[Lane, list[Frame]]]) -> None:
        """Lanes sharing a model: calls of at most `chunk` frames in all and STREAM_FRAMES per lane
        (bounded calls keep the heartbeat beating), each taking every lane's oldest frames."""
        members = [(lane, frames) for lane, frames in members if frames]
        while members:
            share = max(1, min(STREAM_FRAMES, self.chunk // len(members)))
            self.beat()
            self._call([(lane, frames[:share]) for lane, frames in members])
            members = [(lane, frames[share:]) for lane, frames in members if len(frames) > share]

    def _call(self, part: list[tuple[Lane, list[Frame]]]) -> None:
        """One model call; if a joint call fails, each lane alone, so the faulty one is found."""
        part = [(lane, frames) for lane, frames in part if lane.scorer is not None]
        lanes = [lane for lane, _ in part]
        if not part:
            return
        started = time.perf_counter()
        if len(part) > 1:
            try:
                first = lanes[0].scorer
                assert first is not None
                results = first.score_many([lane.scorer for lane in lanes], [f for _, f in part])
            except Exception:  # noqa: BLE001 - the lanes are tried alone below
                log.warning("a joint model call failed; scoring its %d cameras one by one", len(part))
                for lane, frames in part:
                    self._guarded(lane, self._call, [(lane, frames)])
                return
        else:
            lane, frames = part[0]
            assert lane.scorer is not None
            scores = self._guarded(lane, lane.scorer.score, frames)
            if scores is None:
                return
            results = [scores]
        self.metrics.inference(part[0][0].device, time.perf_counter() - started,
                               sum(len(f) for _, f in part))
        for (lane, frames), scores in zip(part, results):
            self._guarded(lane, self._observe, lane, frames, scores)

    def _observe(self, lane: Lane, frames: list[Frame], scores: list[FrameScore]) -> None:
        now = time.monotonic()
        for f, s in zip(frames, scores):
            self.metrics.scored(lane.name, s.score, now - f.mono_time)
            events = lane.tracker.observe(s) if lane.tampered is None else []  # not the scene
            if lane.tracker.active is not None and (lane.peak is None or s.score >= lane.peak.score):
                lane.peak = Peak(s.score, f.image, s.cells, s.box, f.mono_time)
            for ev in events:
                self._out(lane, ev, f.mono_time)
        if scores:
            self.emit(ScoreOut(lane.name, scores[-1].score, scores[-1].wall_time))

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

    def _close(self, lane: Lane, reason: str, wall: float | None = None,
               tamper_too: bool = False) -> None:
        """End the open anomaly event (and, stopping, the camera_tampered one): none stays open."""
        wall = time.time() if wall is None else wall
        for ev in lane.tracker.close(wall, lane.timeline, reason):
            self._out(lane, ev, time.monotonic())
        if tamper_too and lane.tampered is not None:
            self._tamper_ended(lane, wall, reason)

    def _scene(self, lane: Lane, change: SceneChange) -> None:
        """Another model scores from the next frame (an open event carries over, judged by the new
        model's threshold from then on), or the camera was tampered with, or is back."""
        if change.model is not None and lane.models is not None and change.model != lane.models.active:
            log.info("camera %s: model %s -> %s (%s) at %.1fs", lane.name, lane.models.active,
                     change.model, change.why, lane.timeline)
            lane.tracker.retune(lane.models.activate(change.model))
            lane.scorer, lane.size, lane.peak = None, None, None  # rebuilt at the next frame
            self.metrics.active_model(lane.name, change.model)
        if change.tampered and lane.tampered is None:
            log.warning("camera %s: tampered with: %s", lane.name, change.why)
            self._close(lane, "camera tampered", change.wall_time)
            lane.tampered = Event(uuid.uuid4().hex[:16], lane.name, "start", change.wall_time,
                                  lane.timeline, None, None, change.difference, 0, None,
                                  change.difference, kind=TAMPERED, detail=change.why)
            self._out(lane, lane.tampered, change.mono_time)
            self.metrics.tampered(lane.name, True)
        elif change.tampered is False and lane.tampered is not None:
            log.info("camera %s: %s", lane.name, change.why)
            self._tamper_ended(lane, change.wall_time, change.why)
            if lane.scorer is not None:
                lane.scorer.reset()  # windows must not span the tampered pictures

    def _tamper_ended(self, lane: Lane, wall: float, reason: str) -> None:
        assert lane.tampered is not None
        ev = dataclasses.replace(lane.tampered, type="end", end_wall=wall, reason=reason,
                                 end_stream=max(lane.timeline, lane.tampered.start_stream))
        lane.tampered = None
        self._out(lane, ev, time.monotonic())
        self.metrics.tampered(lane.name, False)

    def _out(self, lane: Lane, ev: Event, captured: float) -> None:
        anomaly = ev.kind != TAMPERED
        if lane.models is not None:
            ev = dataclasses.replace(ev, model=lane.models.active)
        self.emit(EventOut(ev, lane.peak if anomaly else None, captured))
        if ev.type == "end" and anomaly:
            lane.peak = None
