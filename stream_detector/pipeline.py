"""Wires one camera's chain of stages: source -> frame queue -> preprocessing -> window scoring ->
frame scores with regions -> events -> snapshot. The daemon (daemon.py) runs the threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture import (
    DEMO_SOURCE,
    DEMO_VIDEO,
    NEAR,
    FrameHistory,
    FrameQueue,
    source_kind,
)
from stream_detector.config import DEFAULT_MODEL, CameraConfig
from stream_detector.errors import ConfigError, ModelError
from stream_detector.emitter import Renderer
from stream_detector.events import EventTracker, policy_for
from stream_detector.inference import Item, Lane, Scorer
from stream_detector.messages import Box, Event, Frame, FrameScore, Peak
from stream_detector.model import LoadedModel, load, pick_device
from stream_detector.preprocess import FramePreparer
from stream_detector.report import snapshot
from stream_detector.scoring import ScoreBatch, WindowScorer, firing_cells, score_together

log = logging.getLogger("stream_detector.pipeline")


class FrameScorer:
    """One camera's causal scorer: raw frames in, FrameScore messages (with region) out.

    Frames usually arrive prepared by the capture thread (preprocessed, with motion); others are
    prepared here. Cameras of one loaded model share `batch_key` and are scored together.
    """

    def __init__(self, model: LoadedModel, threshold: float, ignore: np.ndarray | None = None) -> None:
        self.model = model
        self.threshold = threshold
        self.prepare = FramePreparer.for_model(model.metadata)
        self.scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                                   chunk=model.bank.new, top_k=int(model.metadata.get("top_k", 1)),
                                   ignore=ignore, frames_carry_motion=True, bank=model.bank)

    @property
    def batch_key(self) -> object:
        return self.model.module

    def reset(self) -> None:
        self.scorer.reset()
        self.prepare = FramePreparer.for_model(self.model.metadata)

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        """Score consecutive frames of this camera (a batch amortises the model call)."""
        if not frames:
            return []
        return self.verdicts(frames, self.scorer.push(self.model_input(frames)))

    def score_many(self, scorers: list[FrameScorer], frames: list[list[Frame]]) -> list[list[FrameScore]]:
        """Several cameras of this model, each with its next frames, in one model call."""
        inputs = [s.model_input(f) for s, f in zip(scorers, frames)]
        batches = score_together([s.scorer for s in scorers], inputs)
        return [s.verdicts(f, b) for s, f, b in zip(scorers, frames, batches)]

    def model_input(self, frames: list[Frame]) -> np.ndarray:
        return np.stack([f.prepared if f.prepared is not None else self.prepare(f.image)
                         for f in frames])

    def verdicts(self, frames: list[Frame], batch: ScoreBatch) -> list[FrameScore]:
        out = []
        for i, f in enumerate(frames):
            h, w = f.image.shape[:2]
            cells = batch.cell_score[i]
            box = None
            if batch.score[i] > self.threshold:
                box = self.model.slicer.box_of(firing_cells(cells, self.threshold), w, h)
            out.append(FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time,
                                  float(batch.score[i]), float(batch.raw_score[i]),
                                  bool(batch.warmup[i]), cells, box))
        return out


def ignore_mask(model: LoadedModel, polygons: tuple[tuple[tuple[float, float], ...], ...],
                width: int, height: int) -> np.ndarray | None:
    """Cells whose centre lies in an ignore polygon (polygons in source pixels)."""
    if not polygons:
        return None
    canvas = np.zeros((height, width), np.uint8)
    for poly in polygons:
        cv2.fillPoly(canvas, [np.round(np.array(poly)).astype(np.int32)], 255)
    s = model.slicer
    mask = np.zeros(s.grid, bool)
    for r, y0 in enumerate(s.row_starts):
        for c, x0 in enumerate(s.col_starts):
            cx = min(width - 1, int((x0 + s.cell / 2) * width / s.width))
            cy = min(height - 1, int((y0 + s.cell / 2) * height / s.height))
            mask[r, c] = canvas[cy, cx] > 0
    return mask


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


ScorerFactory = Callable[[LoadedModel, float, "np.ndarray | None"], Scorer]


def lane_for(name: str, cfg: CameraConfig, model: LoadedModel, queue: FrameQueue[Item],
             make: ScorerFactory = FrameScorer) -> Lane:
    """The camera as the inference worker sees it: its queue, event tracker and scorer factory.

    `make` builds the scorer (tests inject one that fails, to show the worker survives it).
    """
    threshold = model.threshold(cfg.false_alarms_per_hour)
    policy = policy_for(threshold, cfg)

    def make_scorer(w: int, h: int) -> Scorer:
        model.check_source(w, h, f"camera {name}")
        return make(model, threshold, ignore_mask(model, cfg.ignore, w, h))

    return Lane(name, queue, EventTracker(name, policy), make_scorer, model.device.type)


def scoring_rate(cfg: CameraConfig, model: LoadedModel) -> float:
    """Frames per second to score: the camera's fps_limit, else the rate the model was fitted at
    (a 25 fps camera under a 10 fps model is scored at 10 fps: the model's windows span the time,
    and its motion the per-frame displacement, it learned). 0 = every frame."""
    if cfg.fps_limit is not None:
        return cfg.fps_limit
    return float(model.metadata.get("fps") or 0.0)


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
