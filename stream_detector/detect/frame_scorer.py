"""One camera's scorer as the inference worker runs it: frames in, FrameScore messages (score,
cells, the box of the cells that fired) out; the cells its ignore polygons mask; its scoring rate;
its models, of which one scores at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import cv2
import numpy as np

from stream_detector.capture import FrameQueue
from stream_detector.config import CameraConfig
from stream_detector.detect.events import EventPolicy, EventTracker, policy_for
from stream_detector.detect.inference import Item, Lane, Scorer
from stream_detector.detect.preprocess import FramePreparer
from stream_detector.detect.scoring import ScoreBatch, WindowScorer, firing_cells, score_together
from stream_detector.messages import Frame, FrameScore
from stream_detector.model import LoadedModel


class FrameScorer:
    """One camera's causal scorer: raw frames in, FrameScore messages (with region) out.

    Frames usually arrive prepared by the capture thread (preprocessed, with motion and scene); others are
    prepared here. Cameras of one loaded model share `batch_key` and are scored together.
    """

    def __init__(self, model: LoadedModel, threshold: float, ignore: np.ndarray | None = None) -> None:
        self.model = model
        self.threshold = threshold
        self.prepare = FramePreparer.for_model(model)
        self.scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                                   chunk=model.bank.new, ignore=ignore, frames_prepared=True,
                                   bank=model.bank)

    @property
    def batch_key(self) -> object:
        return self.model.module

    def reset(self) -> None:
        self.scorer.reset()
        self.prepare = FramePreparer.for_model(self.model)

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


def scoring_rate(cfg: CameraConfig, model: LoadedModel) -> float:
    """Frames per second to score: the camera's fps_limit, else the rate the model was fitted at
    (a 25 fps camera under a 10 fps model is scored at 10 fps: the model's windows span the time,
    and its motion the per-frame displacement, it learned). 0 = every frame."""
    if cfg.fps_limit is not None:
        return cfg.fps_limit
    return float(model.metadata.get("fps") or 0.0)


ScorerFactory = Callable[[LoadedModel, float, "np.ndarray | None"], Scorer]


class CameraModels:
    """A camera's models by name (its `models`, or its one model as "default") and the one that
    scores now; used by the inference thread only. `make` builds a scorer for a model."""

    def __init__(self, camera: str, cfg: CameraConfig, models: Mapping[str, LoadedModel],
                 active: str, make: ScorerFactory = FrameScorer) -> None:
        if active not in models:
            raise ValueError(f"camera {camera}: no model named {active!r}")
        self.camera, self.cfg, self.models, self.make = camera, cfg, dict(models), make
        self.active = active

    def policy(self) -> EventPolicy:
        return policy_for(self.models[self.active].threshold(self.cfg.false_alarms_per_hour), self.cfg)

    def activate(self, name: str) -> EventPolicy:
        """Score with model `name` from the next scorer built; its event policy (threshold)."""
        if name not in self.models:
            raise ValueError(f"camera {self.camera}: no model named {name!r}")
        self.active = name
        return self.policy()

    def replace(self, name: str, model: LoadedModel) -> bool:
        """Model `name` is now `model` (a tuned version); True if it is the one scoring."""
        if name not in self.models:
            return False
        self.models[name] = model
        return name == self.active

    def make_scorer(self, w: int, h: int) -> Scorer:
        model = self.models[self.active]
        model.check_source(w, h, f"camera {self.camera}")
        threshold = model.threshold(self.cfg.false_alarms_per_hour)
        return self.make(model, threshold, ignore_mask(model, self.cfg.ignore, w, h))


def lane_for(name: str, cfg: CameraConfig, models: Mapping[str, LoadedModel], queue: FrameQueue[Item],
             make: ScorerFactory = FrameScorer, active: str | None = None) -> Lane:
    """The camera as the inference worker sees it: its queue, event tracker and models (`active`,
    the first by default, scores first).

    `make` builds the scorer (tests inject one that fails, to show the worker survives it).
    """
    chosen = CameraModels(name, cfg, models, active or next(iter(models)), make)
    return Lane(name, queue, EventTracker(name, chosen.policy()), chosen.make_scorer,
                chosen.models[chosen.active].device.type, models=chosen)
