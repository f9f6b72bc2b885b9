"""Frame preprocessing shared by fitting and live scoring: grayscale (or colour), working
resolution, [-1, 1], channels first.

Defined once so training and inference can never disagree about what the model sees.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from stream_detector.detect.motion import MotionField, to_gray_u8
from stream_detector.detect.foreground import ScenePrior, SceneField, scene_prior_of
from stream_detector.model import LoadedModel


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


class StreamChannels:
    """The channels a frame gets from its stream's history, for models that use them: its motion
    from the frame before (2, see motion.py) and its scene channels (2, see scene.py). One per
    stream and connection: a new connection starts both afresh."""

    def __init__(self, motion: bool, scene: ScenePrior | None) -> None:
        self.motion = MotionField() if motion else None
        self.scene = SceneField(scene) if scene is not None else None

    def reset(self) -> None:
        if self.motion is not None:
            self.motion.reset()
        if self.scene is not None:
            self.scene.reset()

    def __call__(self, frames: np.ndarray, gray: np.ndarray | None = None) -> np.ndarray:
        """(n, C, H, W) preprocessed consecutive frames (and their uint8 gray, if at hand) -> the
        model's input (n, C [+ 2 flow] [+ 2 scene], H, W)."""
        if self.motion is None and self.scene is None:
            return frames
        gray = to_gray_u8(frames) if gray is None else gray
        parts = [frames]
        if self.motion is not None:
            parts.append(self.motion(gray))
        if self.scene is not None:
            parts.append(self.scene(gray))
        return np.concatenate(parts, axis=1)

    @classmethod
    def for_detector(cls, detector: Any) -> StreamChannels:
        """The channels the exported module (or its eager twin) was fitted with."""
        return cls(bool(int(detector.motion_channels)), scene_prior_of(detector))


class FramePreparer:
    """One connection's model input, frame by frame: preprocessing and, for models that use them,
    the channels from the stream's history (motion, scene). Runs in the camera's capture thread, so
    this per-frame work (OpenCV and numpy, which release the GIL) spreads over the cores instead of
    queueing on inference.

    A new connection gets a new preparer: the first frame after a reconnect has no predecessor.
    """

    def __init__(self, preprocess: Preprocessor, channels: StreamChannels) -> None:
        self.preprocess = preprocess
        self.channels = channels

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """BGR (or gray) uint8 frame -> float32 (C [+ 2 flow] [+ 2 scene], H, W), as WindowScorer
        takes it."""
        small = self.preprocess.resized(image)
        x = self.preprocess.normalize(small)[None]
        gray = small[None] if small.ndim == 2 else to_gray_u8(x)  # as fitting computes it
        return self.channels(x, gray)[0]

    @classmethod
    def for_model(cls, model: LoadedModel) -> FramePreparer:
        return cls.for_detector(model.metadata, model.module)

    @classmethod
    def for_detector(cls, metadata: dict[str, Any], detector: Any) -> FramePreparer:
        """A model's metadata and its module (exported, or the eager twin before export)."""
        return cls(Preprocessor.for_model(metadata), StreamChannels.for_detector(detector))
