"""Frame preprocessing shared by fitting and live scoring: grayscale, working resolution, [-1, 1].

Defined once so training and inference can never disagree about what the model sees.
"""

from __future__ import annotations

import cv2
import numpy as np


class Preprocessor:
    """Turns a BGR (or gray) uint8 frame of any size into a float32 (H, W) array in [-1, 1]."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if gray.shape != (self.height, self.width):
            # INTER_AREA averages source pixels: less aliasing of fine texture into false motion.
            gray = cv2.resize(gray, (self.width, self.height), interpolation=cv2.INTER_AREA)
        out = gray.astype(np.float32)
        out *= 1.0 / 127.5
        out -= 1.0
        return out
