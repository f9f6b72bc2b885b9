"""The scene watch: a camera's frame queue as its capture thread sees it, which also looks at the
picture a few times a second and queues a SceneChange right after the frame that showed one:
another of the camera's models should score, or the picture was tampered with (or is back).

It runs in the capture thread, beside decoding, so the inference thread spends nothing on it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from stream_detector.capture import FrameReceiver
from stream_detector.config import CameraConfig
from stream_detector.config import ModelChoice, choose
from stream_detector.detect.scene import PictureClass, SceneSample, measure
from stream_detector.detect.tamper import TamperDetector
from stream_detector.messages import Frame, SceneChange, StreamState

log = logging.getLogger(__name__)

INTERVAL = 0.25  # seconds of stream time between measured frames: ~0.4% of a core per camera


def local_time(wall: float) -> dt.time:
    return dt.datetime.fromtimestamp(wall).time()


def initial_model(cfg: CameraConfig, wall: float) -> str:
    """The model a camera starts with: its rules by the clock, the picture not yet seen."""
    return choose(cfg.model_choices, None, local_time(wall))


class SceneWatch:
    """Passes every item on to `queue` (a FrameReceiver: put never blocks) and watches the frames.

    Called from the camera's capture thread only. Its state outlives reconnects: a camera turned
    while its stream was down is still noticed when the stream returns.
    """

    def __init__(self, camera: str, queue: FrameReceiver, choices: tuple[ModelChoice, ...],
                 active: str, tamper: TamperDetector | None,
                 measure_frame: Callable[[Frame], SceneSample] = lambda f: measure(f.image),
                 interval: float = INTERVAL) -> None:
        self.camera = camera
        self.queue = queue
        self.choices = choices
        self.active = active
        self.tamper = tamper
        self.picture = PictureClass()
        self.measure = measure_frame
        self.interval = interval
        self._t = 0.0  # the watch's own clock: stream time that never goes back
        self._last_stream: float | None = None
        self._next = 0.0

    @classmethod
    def for_camera(cls, name: str, cfg: CameraConfig, queue: FrameReceiver,
                   active: str) -> SceneWatch | None:
        """The camera's watch, or None when there is nothing to watch (one model, tamper off)."""
        if len(cfg.model_choices) < 2 and not cfg.tamper:
            return None
        detector = TamperDetector(cfg.tamper_after, interval=INTERVAL) if cfg.tamper else None
        return cls(name, queue, cfg.model_choices, active, detector)

    def put(self, item: Frame | StreamState) -> bool:
        kept = self.queue.put(item)
        if isinstance(item, StreamState):
            if not item.up and self.tamper is not None:
                self.tamper.restart_runs()
            self._last_stream = None
            return kept
        return all([kept] + [self.queue.put(change) for change in self.observe(item)])

    def observe(self, frame: Frame) -> list[SceneChange]:
        """What changed at this frame (usually nothing; most frames are not even measured)."""
        if self._last_stream is not None:
            self._t += max(0.0, frame.stream_time - self._last_stream)  # restarts at 0 on reconnect
        self._last_stream = frame.stream_time
        if self._t < self._next:
            return []
        self._next = self._t + self.interval
        sample = self.measure(frame)
        tampered = self.tamper is not None and self.tamper.tampered
        if not sample.flat and not tampered:  # a covered lens is not night; nor is a tampered one
            self.picture.update(sample.colour, self._t)
        out = []
        moment = local_time(frame.wall_time)
        wanted = choose(self.choices, self.picture.state, moment)
        if wanted != self.active:
            chosen = next(c for c in self.choices if c.name == wanted)
            rule = chosen.rule if chosen.holds(self.picture.state, moment) else "no rule holds"
            out.append(SceneChange(self.camera, frame.wall_time, frame.mono_time, model=wanted,
                                   why=f"{rule}; the picture is {self.picture.state or 'unknown'}"))
            self.active = wanted
        if self.tamper is not None:
            verdict = self.tamper.observe((self.active, self.picture.state), sample, self._t)
            if verdict is not None:
                out.append(SceneChange(self.camera, frame.wall_time, frame.mono_time,
                                       tampered=verdict.tampered, difference=verdict.difference,
                                       why=verdict.why))
        return out
