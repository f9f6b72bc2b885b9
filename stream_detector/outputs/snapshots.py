"""Snapshots: an event's peak frame drawn with the anomaly heatmap and the event box, as a JPEG;
for a camera that scores a substream, the main-stream frame captured nearest the peak instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import cv2
import numpy as np

from stream_detector.capture import NEAR, FrameHistory
from stream_detector.messages import Box, Event, Peak
from stream_detector.outputs.writer import Renderer

if TYPE_CHECKING:
    from stream_detector.model import LoadedModel  # only its slicer is used: no torch at import

log = logging.getLogger(__name__)

WHITE, BLACK, RED = (255, 255, 255), (0, 0, 0), (40, 40, 220)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def renderer_for(name: str, model: LoadedModel, threshold: float,
                 main: FrameHistory | None = None) -> Renderer:
    """Draws an event's peak frame with the anomaly heatmap and box, as a JPEG (the writer's job).

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


def renderer_by_model(renderers: Mapping[str, Renderer]) -> Renderer:
    """A camera with several models: each event's snapshot is drawn by the renderer of the model
    that scored it (the heatmap's cells are that model's); the first when the event names none."""
    first = next(iter(renderers.values()))

    def render(peak: Peak, event: Event) -> bytes | None:
        return renderers.get(event.model or "", first)(peak, event)
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


def snapshot(image: np.ndarray, heat: np.ndarray, threshold: float, box: Box | None,
             caption: str) -> np.ndarray:
    """The frame with cells over the threshold tinted by score (JET) and the event box drawn."""
    out = image.copy()
    scaled = np.clip((heat - threshold) / max(threshold, 1e-6), 0, 1)
    colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    mask = heat > threshold
    out[mask] = (0.5 * out[mask] + 0.5 * colours[mask]).astype(np.uint8)
    if box is not None:
        cv2.rectangle(out, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), RED, 2)
    cv2.putText(out, caption, (8, 22), FONT, 0.6, WHITE, 3, cv2.LINE_AA)
    cv2.putText(out, caption, (8, 22), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    return out
