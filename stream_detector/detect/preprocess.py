"""Frame preprocessing shared by fitting and live scoring: grayscale (or colour), working
resolution, [-1, 1], channels first.

Defined once so training and inference can never disagree about what the model sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from stream_detector.detect.motion import MotionField, to_gray_u8


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
        return self.normalize(self.resized(image))

    def resized(self, image: np.ndarray) -> np.ndarray:
        """The frame as uint8 gray (or BGR) at the working size: what the flow is computed on."""
        if self.color:
            img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        else:
            img = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if img.shape[:2] != (self.height, self.width):
            # INTER_AREA averages source pixels: less aliasing of fine texture into false motion.
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return img

    def normalize(self, img: np.ndarray) -> np.ndarray:
        """uint8 working-size image -> float32 (C, H, W) in [-1, 1]."""
        out = img.astype(np.float32)
        out *= 1.0 / 127.5
        out -= 1.0
        return out.transpose(2, 0, 1).copy() if self.color else out[None]

    @classmethod
    def for_model(cls, metadata: dict[str, object]) -> Preprocessor:
        """The preprocessing a model directory was fitted with."""
        width, height = metadata["working_size"]  # type: ignore[misc]
        return cls(int(width), int(height), bool(metadata.get("color", False)))


class FramePreparer:
    """One connection's model input, frame by frame: preprocessing and, for models that use it,
    the motion from the frame before. Runs in the camera's capture thread, so this per-frame work
    (OpenCV, which releases the GIL) spreads over the cores instead of queueing on inference.

    A new connection gets a new preparer: the first frame after a reconnect has no predecessor.
    """

    def __init__(self, preprocess: Preprocessor, motion: bool) -> None:
        self.preprocess = preprocess
        self.motion = MotionField() if motion else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """BGR (or gray) uint8 frame -> float32 (C [+ 2 flow], H, W), as WindowScorer takes it."""
        small = self.preprocess.resized(image)
        x = self.preprocess.normalize(small)
        if self.motion is None:
            return x
        gray = small[None] if small.ndim == 2 else to_gray_u8(x[None])  # as fitting computes it
        return np.concatenate([x, self.motion(gray)[0]])

    @classmethod
    def for_model(cls, metadata: dict[str, object]) -> FramePreparer:
        return cls(Preprocessor.for_model(metadata), bool(metadata.get("motion", False)))
