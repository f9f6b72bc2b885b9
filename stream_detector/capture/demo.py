"""The demo stream: real footage with a clearly labelled synthetic object injected into part of it.

Lets a new user see an anomaly start and end without a camera or labelled data: a bright disc
crosses the scene much faster than any pedestrian, between two frame numbers printed at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture.source import FrameFilter, FrameSource

DEMO_SOURCE = "demo"  # a camera `source` naming the demo stream
DEMO_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@dataclass(frozen=True)
class Injection:
    start: int  # first frame with the object
    end: int  # frame after the last one with the object
    radius: float = 0.05  # of the frame width
    speed: float = 0.03  # of the frame width per frame

    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        """The frame with the object drawn in (a copy), or the frame itself outside [start, end)."""
        if not self.start <= index < self.end:
            return frame
        h, w = frame.shape[:2]
        step = index - self.start
        travel = (step * self.speed * w) % (2 * w)  # bounce between the edges
        x = int(travel if travel < w else 2 * w - travel)
        y = int(h * (0.35 + 0.3 * np.sin(step / 6.0)))
        out = frame.copy()
        cv2.circle(out, (x, y), max(3, int(self.radius * w)), (255, 255, 255), -1, cv2.LINE_AA)
        return out


class DemoSource(FrameFilter):
    """The demo camera: vtest.avi looped at its native rate, the injection repeated on every pass.

    Wraps any FrameSource (normally OpenCVSource on DEMO_VIDEO) and draws the object into the
    frames whose position within the pass falls in [start, end).
    """

    def __init__(self, inner: FrameSource, injection: Injection, period: int) -> None:
        super().__init__(inner)
        self.injection = injection
        self.period = max(1, period)
        self._count = -1

    def open(self) -> None:
        self.inner.open()
        self._count = -1

    def grab(self) -> bool:
        ok = self.inner.grab()
        if ok:
            self._count += 1
        return ok

    def retrieve(self) -> np.ndarray | None:
        frame = self.inner.retrieve()
        return None if frame is None else self.injection.apply(frame, self._count % self.period)
