"""What a frame shows, measured cheaply for the scene watch (no model involved): the layout of the
scene as a small edge map, brightness, sharpness, how colourful it is; and the picture's class,
grey (infrared at night) or colour, decided with hysteresis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# Structure is compared at this size: people and cars blur away, the scene's layout stays.
THUMB = (64, 48)
# Sharpness is measured at this size: defocus shows, most sensor noise does not (measured on
# vtest.avi: a Gaussian blur of sigma 4 px at 768x576 reads 0.24x, the clip itself 0.93-1.04x).
DETAIL = (192, 144)
FLAT = 0.02  # grey standard deviation (0..1) under which a picture shows nothing: covered, black
# The picture's colourfulness (mean chroma / mean brightest channel): vtest.avi reads 0.32, the same
# clip converted to grey by ffmpeg 0.00. Between the two bounds the class does not change.
GREY_BELOW = 0.05
COLOUR_ABOVE = 0.08


@dataclass(frozen=True)
class SceneSample:
    edges: np.ndarray = field(repr=False)  # THUMB-sized gradient magnitude of the grey picture
    brightness: float  # mean grey level, 0..1
    sharpness: float  # mean |Laplacian| at DETAIL size over (mean grey level + 1): contrast-free
    colour: float  # 0 for a grey picture, ~0.3 for an ordinary street in daylight
    flat: bool  # no structure at all: a covered lens, a black or uniform picture


def measure(image: np.ndarray) -> SceneSample:
    """A frame (BGR or grey uint8, any size) measured: about 1.5 ms for 768x576 on one core."""
    detail = cv2.resize(image, DETAIL, interpolation=cv2.INTER_AREA)
    if detail.ndim == 2:
        grey, colour = detail, 0.0
    else:
        grey = cv2.cvtColor(detail, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(detail, THUMB, interpolation=cv2.INTER_AREA).astype(np.int16)
        brightest = small.max(axis=2)
        colour = float((brightest - small.min(axis=2)).mean() / max(1.0, float(brightest.mean())))
    g = grey.astype(np.float32) * (1.0 / 255.0)
    level = float(g.mean())
    sharpness = float(np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean() / (level + 1.0 / 255.0))
    thumb = cv2.GaussianBlur(cv2.resize(g, THUMB, interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    gx = cv2.Sobel(thumb, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(thumb, cv2.CV_32F, 0, 1)
    return SceneSample(cv2.magnitude(gx, gy), level, sharpness, colour, float(g.std()) < FLAT)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two edge maps: 1 same layout, ~0 unrelated, < 0 mirrored.

    Invariant to a change of gain, so light that brightens or dims the whole scene does not count."""
    a = a - a.mean()
    b = b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-12 else 0.0


def picture_of(colour: float) -> str | None:
    """"grey" or "colour" for a measured colourfulness; None between the bounds."""
    return "grey" if colour < GREY_BELOW else "colour" if colour > COLOUR_ABOVE else None


class PictureClass:
    """Grey or colour, decided on the frames: the first measurement decides at once; after that the
    other class must be seen for `hold` seconds, so a passing headlight does not flip it."""

    def __init__(self, hold: float = 1.0) -> None:
        self.hold = hold
        self.state: str | None = None
        self._since: float | None = None

    def update(self, colour: float, t: float) -> str | None:
        seen = picture_of(colour)
        if self.state is None or seen is None or seen == self.state:
            self.state = self.state or seen
            self._since = None
        elif self._since is None:
            self._since = t
        elif t - self._since >= self.hold:
            self.state, self._since = seen, None
        return self.state
