"""Frame preprocessing shared by fitting and live scoring: grayscale (or colour), working
resolution, [-1, 1], channels first.

Defined once so training and inference can never disagree about what the model sees.
"""

from __future__ import annotations

import cv2
import numpy as np


class Preprocessor:
    """Turns a BGR (or gray) uint8 frame of any size into float32 (C, H, W) in [-1, 1].

    C is 1 (grayscale, the default: cheaper and insensitive to white balance) or 3 (BGR).
    """

    def __init__(self, width: int, height: int, color: bool = False) -> None:
        self.width = width
        self.height = height
        self.color = color

    @property
    def channels(self) -> int:
        return 3 if self.color else 1

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.color:
            img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        else:
            img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if img.shape[:2] != (self.height, self.width):
            # INTER_AREA averages source pixels: less aliasing of fine texture into false motion.
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        out = img.astype(np.float32)
        out *= 1.0 / 127.5
        out -= 1.0
        return out.transpose(2, 0, 1).copy() if self.color else out[None]

    @classmethod
    def for_model(cls, metadata: dict[str, object]) -> Preprocessor:
        """The preprocessing a model directory was fitted with."""
        width, height = metadata["working_size"]  # type: ignore[misc]
        return cls(int(width), int(height), bool(metadata.get("color", False)))
