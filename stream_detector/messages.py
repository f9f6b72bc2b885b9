"""Small immutable messages passed between the stages of the data flow.

Stages exchange only these; JSON appears only at the edges (sinks, store, CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame as it left the camera, before any resizing."""

    camera: str
    index: int  # 0-based count of frames read from this source since it was opened
    stream_time: float  # seconds into the stream (position for files, arrival for live sources)
    wall_time: float  # time.time() when captured; for payloads only
    mono_time: float  # time.monotonic() when captured; for latency and hysteresis
    image: np.ndarray = field(repr=False)  # HxWx3 uint8 BGR
    # The model's input for this frame (float32 (C [+ 2 flow], H, W), see detect.FramePreparer)
    # when the capture thread prepared it; None: the scorer prepares it.
    prepared: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in source-frame pixels, right/bottom exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass(frozen=True)
class FrameScore:
    """The detector's verdict on one frame, causal: computed from this frame and earlier ones."""

    camera: str
    index: int
    stream_time: float
    wall_time: float
    mono_time: float
    score: float  # smoothed frame score in baseline units (0 ~ normal, threshold from calibration)
    raw_score: float  # unsmoothed frame score
    warmup: bool  # True while the window still contains padding (fewer than T frames seen)
    cells: np.ndarray = field(repr=False)  # (rows, cols) per-cell scores against the baseline
    box: Box | None = None  # bounding box of the cells over the threshold, if any


@dataclass(frozen=True)
class Event:
    """A start/update/end of one anomaly on one camera."""

    id: str
    camera: str
    type: str  # "start" | "update" | "end"
    start_wall: float
    start_stream: float
    end_wall: float | None
    end_stream: float | None
    peak_score: float
    peak_index: int
    box: Box | None
    score: float  # latest score when the event was emitted
    update_wall: float | None = None  # an "update": the wall time of the frame that sent it
    reason: str | None = None  # why an "end" came: cooldown, stream lost, stopped, restart, ...
    kind: str = "anomaly"  # or "camera_tampered": the picture no longer matches the scene
    model: str | None = None  # the camera's model that scored the frame that sent this message
    detail: str | None = None  # camera_tampered: what changed (covered, scene changed, ...)


@dataclass(frozen=True)
class StreamState:
    """A camera's stream came up or was lost. Travels in the frame queue, in order with the frames,
    so frames read before a loss are scored before the loss is handled (and never after)."""

    camera: str
    up: bool
    reason: str
    wall_time: float
    mono_time: float


@dataclass(frozen=True)
class SceneChange:
    """What the picture is changed (measured in the capture thread, detect/watch.py): another of the
    camera's models should score from here, or the picture stopped (or started again) matching the
    scene. Travels in the frame queue right after the frame that showed it, never dropped."""

    camera: str
    wall_time: float
    mono_time: float
    model: str | None = None  # switch to this model (a name of the camera's `models`)
    tampered: bool | None = None  # True: raise camera_tampered; False: clear it
    difference: float = 0.0  # how far the picture is from the learned scene: 0 same .. 1 unrelated
    why: str = ""


@dataclass(frozen=True)
class Peak:
    """The highest-scoring frame of an open event: what its snapshot shows."""

    score: float
    image: np.ndarray = field(repr=False)
    cells: np.ndarray = field(repr=False)
    box: Box | None = None  # in the pixels of `image`, the scored frame
    mono_time: float | None = None  # its capture time: the snapshot finds the main frame nearest it


@dataclass(frozen=True)
class EventOut:
    """Inference -> emitter: an event to store and publish, with its peak frame for the snapshot."""

    event: Event
    peak: Peak | None
    captured: float  # monotonic capture time of the frame that caused it (event latency)


@dataclass(frozen=True)
class ScoreOut:
    """Inference -> emitter: a camera's latest score, for the live score topic."""

    camera: str
    score: float
    wall_time: float = 0.0  # of the frame it scored (0: unknown); for event score timelines
