"""Wires the stages: frames -> preprocessing -> window scoring -> frame scores -> events.

This is the one module that knows every stage; stages never import each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from stream_detector.events import EventPolicy, EventTracker
from stream_detector.messages import Event, Frame, FrameScore
from stream_detector.model.runtime import LoadedModel
from stream_detector.preprocess import Preprocessor
from stream_detector.scoring import WindowScorer, firing_cells


class FrameScorer:
    """One camera's causal scorer: raw frames in, FrameScore messages (with region) out."""

    def __init__(self, model: LoadedModel, threshold: float) -> None:
        self.model = model
        self.threshold = threshold
        width, height = model.metadata["working_size"]
        self.preprocess = Preprocessor(width, height)
        self.scorer = WindowScorer(model.module, model.slicer, model.pretext, model.smoothing, model.device)

    def reset(self) -> None:
        self.scorer.reset()

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        """Score consecutive frames of this camera (a batch amortises the model call)."""
        if not frames:
            return []
        batch = self.scorer.push(np.stack([self.preprocess(f.image) for f in frames]))
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


def detect(frames: Iterable[Frame], scorer: FrameScorer, policy: EventPolicy,
           camera: str) -> Iterator[tuple[FrameScore, list[Event]]]:
    """Score frames one at a time (as live) and yield each score with the events it caused."""
    tracker = EventTracker(camera, policy)
    last: FrameScore | None = None
    for frame in frames:
        (s,) = scorer.score([frame])
        last = s
        yield s, tracker.observe(s)
    if last is not None:
        yield last, tracker.close(last.wall_time, last.stream_time)
