"""Wires one camera's chain of stages: source -> frame queue -> preprocessing -> window scoring ->
frame scores with regions -> events -> snapshot. The daemon (daemon.py) runs the threads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture import (
    DEMO_SOURCE,
    DEMO_VIDEO,
    NEAR,
    FrameHistory,
    source_kind,
)
from stream_detector.config import DEFAULT_MODEL, CameraConfig
from stream_detector.errors import ConfigError, ModelError
from stream_detector.emitter import Renderer
from stream_detector.messages import Box, Event, Peak
from stream_detector.model import LoadedModel, load, pick_device
from stream_detector.report import snapshot

log = logging.getLogger("stream_detector.pipeline")


def check_camera(name: str, cfg: CameraConfig, where: str) -> None:
    """Fail fast on what can never work: a local file that does not exist, the demo without its
    video (for `source` and, when set, `detect_source`)."""
    for key in ("source", "detect_source"):
        uri = getattr(cfg, key)
        if uri == DEMO_SOURCE:
            if not DEMO_VIDEO.is_file():
                raise ConfigError(f"{where}: cameras.{name}.{key}: demo video {DEMO_VIDEO} missing "
                                  f"(install Debian's opencv-doc)")
        elif uri and source_kind(uri) == "file" and not Path(uri).is_file():
            raise ConfigError(f"{where}: cameras.{name}.{key}: no such file {uri}")


def check_device(device: str, where: str) -> None:
    """Fail fast, naming the key, when the configured device does not exist here (cuda, no GPU)."""
    try:
        pick_device(device)
    except ModelError as exc:
        raise ConfigError(f"{where}: device: {exc}") from None


def load_camera_model(name: str, cfg: CameraConfig, device: str, where: str,
                      precision: str = "auto") -> LoadedModel:
    """The camera's model (the committed demo model when it names none); errors name file and key."""
    try:
        return load(Path(cfg.model) if cfg.model else DEFAULT_MODEL, device, precision)
    except ModelError as exc:
        raise ModelError(f"{where}: cameras.{name}.model: {exc}") from None


def renderer_for(name: str, model: LoadedModel, threshold: float,
                 main: FrameHistory | None = None) -> Renderer:
    """Draws an event's peak frame with the anomaly heatmap and box, as a JPEG (the emitter's job).

    With `main` (the camera scores a substream) the picture is the main-stream frame captured
    nearest the peak, the heatmap and box scaled to it; the event's box stays in scored pixels.
    Without a main frame within NEAR seconds the scored frame is drawn.
    """
    fallback = _Once(f"camera {name}: snapshots show the scored stream: no main-stream frame "
                     f"within {NEAR:g}s of the peak (main stream down?)")
    aspect = _Once(f"camera {name}: main stream and detect_source differ in aspect ratio by more "
                   f"than 10%: snapshot boxes and heatmaps are stretched")

    def pick(peak: Peak) -> tuple[np.ndarray, Box | None]:
        if main is None or peak.mono_time is None:
            return peak.image, peak.box
        frame = main.nearest(peak.mono_time)
        if frame is None:
            oldest = main.oldest()
            if oldest is None or oldest < peak.mono_time:  # a peak older than the history is normal
                fallback.warn()
            return peak.image, peak.box
        fallback.reset()
        dh, dw = peak.image.shape[:2]
        mh, mw = frame.image.shape[:2]
        if abs((mw / mh) / (dw / dh) - 1) > 0.1:
            aspect.warn()
        return frame.image, scale_box(peak.box, mw / dw, mh / dh, mw, mh)

    def render(peak: Peak, event: Event) -> bytes | None:
        image, box = pick(peak)
        h, w = image.shape[:2]
        heat = model.slicer.heatmap(peak.cells, w, h)
        img = snapshot(image, heat, threshold, box, f"{name} score {peak.score:.2f}")
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return jpeg.tobytes() if ok else None
    return render


def scale_box(box: Box | None, sx: float, sy: float, width: int, height: int) -> Box | None:
    """A box from one frame's pixels into another's (outward: the scaled box still covers it)."""
    if box is None:
        return None
    return Box(int(np.floor(box.x0 * sx)), int(np.floor(box.y0 * sy)),
               min(width, int(np.ceil(box.x1 * sx))), min(height, int(np.ceil(box.y1 * sy))))


class _Once:
    """A warning logged once until `reset`: a state, not every snapshot, is worth a line."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.said = False

    def warn(self) -> None:
        if not self.said:
            log.warning("%s", self.message)
        self.said = True

    def reset(self) -> None:
        self.said = False
