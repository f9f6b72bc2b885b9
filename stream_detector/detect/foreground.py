"""The scene channels of a frame: what is in front of the background (foreground) and how long it
has stood still there (dwell), per pixel, per stream. Causal; the capture thread's preparer owns one
per connection, beside its MotionField, and fitting runs the same code over each block of footage.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SCENE_CHANNELS = 2  # foreground (0 or 1), dwell (seconds)
_NEIGHBOURS = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class ScenePrior:
    """What fitting learned of the scene's background, and the time constants, in the model.

    background: (H, W) the per-pixel median of the training footage (gray levels 0..255);
    noise: (H, W) how far a pixel usually strays from it when nothing is there (sensor noise,
    texture that aliases when the picture shifts by a pixel)."""

    background: np.ndarray
    noise: np.ndarray
    fps: float
    learn_seconds: float = 3.0  # the stream's own background: the median of its first seconds
    adapt_seconds: float = 120.0  # then it follows slow change (light) where nothing stands
    still_seconds: float = 1.0  # a pixel is still when it matches itself this long ago

    @property
    def threshold(self) -> np.ndarray:
        """Gray levels a pixel must differ by to count as foreground: 3 noise spreads, at least 12."""
        return np.maximum(3.0 * self.noise, 12.0).astype(np.float32)


def fit_prior(gray: np.ndarray, fps: float, **times: float) -> ScenePrior:
    """The prior from (n, H, W) uint8 frames of normal footage (spread over it; a few hundred do)."""
    stack = gray.astype(np.float32)
    background = np.median(stack, 0).astype(np.float32)
    lo, hi = _envelope(background)
    # The typical distance of a frame from the background, pixel by pixel: most of the time a pixel
    # shows the background, so the median over time is its noise, not the walkers that cross it.
    noise = np.median(np.stack([_distance(normalised(f, background), lo, hi) for f in stack]), 0)
    return ScenePrior(background, np.maximum(noise, 2.0).astype(np.float32), fps, **times)


def normalised(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """x with the reference's brightness and contrast (medians of a subsample): a global light
    change or the camera's exposure must not look like foreground. The contrast gain stays within
    0.5..2 (no light change is larger between two adaptations; a flat picture has no contrast to
    measure)."""
    xs, rs = x[::2, ::2], reference[::2, ::2]
    xm, rm = float(np.median(xs)), float(np.median(rs))
    xd = max(1.0, float(np.median(np.abs(xs - xm))))
    rd = max(1.0, float(np.median(np.abs(rs - rm))))
    return ((x - xm) * min(2.0, max(0.5, rd / xd)) + rm).astype(np.float32)


def _envelope(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest background value within one pixel: a frame that shakes by a pixel
    stays inside it, so small camera shake is not foreground."""
    return cv2.erode(background, _NEIGHBOURS), cv2.dilate(background, _NEIGHBOURS)


def _distance(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(lo - x, x - hi), 0.0)


class SceneField:
    """One stream's foreground and dwell, frame by frame.

    The stream's own background is the per-pixel median of its first `learn_seconds` (walkers who
    pass vanish from a median; what stands there when the stream starts is scene), then follows slow
    change where nothing is in front of it. A pixel is foreground when it differs from that
    background and from the fitted one (a background revealed when a thing leaves - a ghost -
    matches the fitted one). Dwell grows while a foreground pixel is still (it matches itself
    `still_seconds` ago: a walker's pixels do not, a slow one's neither), holds while something moves over it (a walker passing in front of a bag), and
    drains three times as fast once the pixel shows the background again. Dwell is eroded over 3x3
    pixels, so a lone noisy pixel never builds one up.
    """

    def __init__(self, prior: ScenePrior) -> None:
        self.prior = prior
        self._threshold = prior.threshold
        self._fitted = _envelope(prior.background)
        self._learn = max(3, int(round(prior.learn_seconds * prior.fps)))
        self._adapt = 1.0 / max(1.0, prior.adapt_seconds * prior.fps)
        self._lag = max(1, int(round(prior.still_seconds * prior.fps)))
        self._step = 1.0 / prior.fps
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next frame starts learning its background again."""
        self._seen: list[np.ndarray] = []
        self._background: np.ndarray | None = None
        self._past: deque[np.ndarray] = deque(maxlen=self._lag)
        self._dwell = np.zeros(self.prior.background.shape, np.float32)

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        """(n, H, W) uint8 consecutive frames -> (n, 2, H, W) float32: foreground, dwell."""
        out = np.zeros((len(gray), SCENE_CHANNELS) + gray.shape[1:], np.float32)
        for i, frame in enumerate(gray):
            out[i] = self._one(frame)
        return out

    def _one(self, frame: np.ndarray) -> np.ndarray:
        x = normalised(frame.astype(np.float32), self.prior.background)
        if self._background is None:
            self._seen.append(x)
            if len(self._seen) >= self._learn:
                self._background = np.median(np.stack(self._seen), 0).astype(np.float32)
                self._seen = []
            return np.zeros((SCENE_CHANNELS,) + x.shape, np.float32)
        thr = self._threshold
        fg = ((_distance(x, *_envelope(self._background)) > thr)
              & (_distance(x, *self._fitted) > thr))
        still = (np.abs(x - self._past[0]) < thr if len(self._past) == self._lag
                 else np.zeros(x.shape, bool))
        self._past.append(x)
        d = self._dwell
        self._dwell = np.where(fg & still, d + self._step,
                               np.where(fg, d, np.maximum(d - 3 * self._step, 0.0))).astype(np.float32)
        self._background += np.where(fg, 0.0, self._adapt * (x - self._background)).astype(np.float32)
        return np.stack([fg.astype(np.float32), cv2.erode(self._dwell, _NEIGHBOURS)])


def scene_prior_of(detector: Any) -> ScenePrior | None:
    """The prior an exported module (or its eager twin) carries; None for a model without scene
    channels."""
    if not int(getattr(detector, "scene_channels", 0)):
        return None
    times = [float(t) for t in detector.scene_times]
    return ScenePrior(detector.background.float().cpu().numpy(), detector.noise.float().cpu().numpy(),
                      float(detector.calibration[3]), *times)
