"""Scoring: windows of preprocessed frames -> per-cell scores against the baseline -> frame score.

Causal by construction: the window for frame t holds frames <= t only (the slicer pads the first
windows with frame 0), frame t's motion is its flow from t-1, and smoothing is an exponential
moving average over past scores.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from stream_detector.detect.preprocess import StreamChannels
from stream_detector.model import CUES, FeatureBank, SpacetimeSlicer


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a run of consecutive frames of one stream."""

    first_index: int
    cell_error: np.ndarray  # (n, K, rows, cols) raw per-cell cues (model/network.py CUES)
    cell_score: np.ndarray  # (n, rows, cols) cues against the baseline, combined
    raw_score: np.ndarray  # (n,) the most anomalous region's score, before smoothing
    score: np.ndarray  # (n,) causally smoothed frame score
    warmup: np.ndarray  # (n,) bool, window still padded with frame 0


class WindowScorer:
    """Scores one stream chunk by chunk; every frame is encoded (and its channels computed) once.

    `detector` is the exported module (TorchScript) or its eager twin: anything with `encode`,
    `score_cells`, `spatial_channels`, `motion_channels`, `scene_channels` and forward(frames,
    features, windows) returning (prediction, cell_error, cell_score, frame_score). Streams that
    share a detector can be scored in one model call with `score_together`.
    """

    def __init__(self, detector: Any, slicer: SpacetimeSlicer, smoothing: float,
                 device: torch.device, chunk: int = 8, ignore: np.ndarray | None = None,
                 frames_prepared: bool = False, bank: FeatureBank | None = None) -> None:
        self.detector = detector
        self.slicer = slicer
        self.smoothing = smoothing
        self.device = device
        self.chunk = chunk
        # Fitting passes frames whose channels it computed once for training, and the daemon's
        # capture threads prepare theirs; other callers' frames get them here.
        self.prepared = frames_prepared
        self.channels = StreamChannels.for_detector(detector)
        # Streams scored together share a bank (the model's, in the daemon); alone, a private one.
        self.bank = bank or FeatureBank(slicer.window - 1, new=max(chunk, 1))
        if self.bank.history != slicer.window - 1:
            raise ValueError(f"bank keeps {self.bank.history} frames, windows need {slicer.window - 1}")
        self.block = self.bank.join()
        weakref.finalize(self, self.bank.leave, self.block)
        self.seen = 0  # frames ever pushed since the last reset: the index of the next one
        self._smooth = ScoreSmoother(smoothing)
        # (rows, cols) True = never counts (operator's masks); the frame score is then recomputed
        # by the module from the remaining cells, so the exported model stays camera-independent.
        self.ignore = ignore if ignore is not None and ignore.any() else None

    def reset(self) -> None:
        """Forget the stream (after a reconnect the old frames are no longer its past)."""
        self.seen = 0
        self.channels.reset()
        self._smooth = ScoreSmoother(self.smoothing)

    def model_input(self, frames: np.ndarray, prepared: bool | None = None) -> np.ndarray:
        """(n, C, H, W) (or (n, H, W) gray) preprocessed frames -> the model's input, with the
        channels of the stream's history (motion, scene) unless they are there already."""
        if frames.ndim == 3:
            frames = frames[:, None]
        if self.prepared if prepared is None else prepared:
            return frames
        return self.channels(frames)

    def push(self, frames: np.ndarray, prepared: bool | None = None) -> ScoreBatch:
        """Score preprocessed frames that follow earlier pushes."""
        x = self.model_input(frames, prepared)
        if not len(x):
            rows, cols = self.slicer.grid
            none = np.zeros((0, rows, cols), np.float32)
            return self.finish(np.zeros((0, len(CUES), rows, cols), np.float32), none,
                               np.zeros(0, np.float32))
        step = min(self.chunk, self.bank.new)
        return merge([score_together([self], [x[i:i + step]])[0] for i in range(0, len(x), step)])

    @torch.no_grad()
    def finish(self, cell_error: np.ndarray, cell_score: np.ndarray, raw: np.ndarray) -> ScoreBatch:
        """This stream's share of a model call: masks, smoothing and warm-up flags."""
        first = self.seen - len(raw)
        if self.ignore is not None and len(raw):
            keep = torch.from_numpy((~self.ignore).astype(np.float32)).to(self.device)
            cells, frame = self.detector.score_cells(torch.from_numpy(cell_error).to(self.device), keep)
            cell_score = np.where(self.ignore, -np.inf, cells.float().cpu().numpy())
            raw = frame.float().cpu().numpy()
        smooth = self._smooth(raw)
        warmup = np.arange(first, first + len(raw)) < self.slicer.window - 1
        return ScoreBatch(first, cell_error, cell_score, raw, smooth, warmup)


@torch.no_grad()
def score_together(scorers: Sequence[WindowScorer], inputs: Sequence[np.ndarray]) -> list[ScoreBatch]:
    """The next frames of several streams scored in one model call; all share one detector and
    one FeatureBank.

    inputs[i] is (n_i, C, H, W) model input (with motion) following scorer i's earlier frames, at
    most bank.new of them. New frames are encoded together and written into each stream's ring in
    the bank; window indices point at bank rows, so one forward scores every window and no history
    is copied. A stream's state (frames seen, smoothing) changes only once the call has succeeded:
    a failed call leaves every scorer as it was (its new rows lie outside every window).
    """
    first = scorers[0]
    detector, device, bank = first.detector, first.device, first.bank
    if any(s.bank is not bank for s in scorers):
        raise ValueError("streams scored together must share one FeatureBank")
    if any(len(x) > bank.new for x in inputs):
        raise ValueError(f"at most {bank.new} new frames per stream and call")
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(inputs), dtype=np.float32))
    if device.type == "cuda":  # page-locked staging lets the copy run asynchronously
        x = x.pin_memory().to(device, non_blocking=True)
    feats = detector.encode(x)
    rows: list[int] = []
    windows: list[list[int]] = []
    for scorer, chunk in zip(scorers, inputs):
        new = range(scorer.seen, scorer.seen + len(chunk))
        rows += bank.rows(scorer.block, list(new))
        windows += [bank.rows(scorer.block, scorer.slicer.window_indices(t)) for t in new]
    bank.store(torch.tensor(rows, device=device), x, feats)
    assert bank.frames is not None and bank.features is not None
    out = detector(bank.frames, bank.features, torch.tensor(windows, device=device))
    cell_error, cell_score, raw = (t.float().cpu().numpy() for t in (out[1], out[2], out[3]))
    batches, row = [], 0
    for scorer, chunk in zip(scorers, inputs):
        n = len(chunk)
        scorer.seen += n
        batches.append(scorer.finish(cell_error[row:row + n], cell_score[row:row + n],
                                     raw[row:row + n]))
        row += n
    return batches


def merge(batches: Sequence[ScoreBatch]) -> ScoreBatch:
    """Consecutive batches of one stream as one."""
    if len(batches) == 1:
        return batches[0]
    return ScoreBatch(batches[0].first_index,
                      *(np.concatenate([getattr(b, f) for b in batches])
                        for f in ("cell_error", "cell_score", "raw_score", "score", "warmup")))


def score_frames(detector: Any, slicer: SpacetimeSlicer, smoothing: float,
                 device: torch.device, frames: np.ndarray) -> ScoreBatch:
    """Score a whole clip from its first frame."""
    return WindowScorer(detector, slicer, smoothing, device).push(frames)


def firing_cells(cell_score: np.ndarray, threshold: float) -> np.ndarray:
    """The region that fired: the cells over the threshold connected (8 neighbours) to the highest
    cell, so the box is one object's, not the span of every busy cell in view; if no cell is over
    (a smoothed frame score can be while its cells dropped), the highest cell alone."""
    top = np.unravel_index(int(np.argmax(cell_score)), cell_score.shape)
    over = (cell_score > threshold).astype(np.uint8)
    if not over[top]:
        mask = np.zeros(cell_score.shape, bool)
        mask[top] = True
        return mask
    _, labels = cv2.connectedComponents(over, connectivity=8)
    return labels == labels[top]


class ScoreSmoother:
    """A stream's frame score as it is reported: the median of a frame's raw score and the two
    before it (one frame's glitch - a decoding artefact, the flow of an occlusion - is not an
    anomaly; what lasts two frames passes), then a causal exponential moving average."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._recent: list[float] = []
        self._ema: float | None = None

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """The next raw scores of the stream -> their smoothed scores."""
        steady = np.empty_like(raw)
        for i, v in enumerate(raw):
            self._recent = [*self._recent[-2:], float(v)]
            steady[i] = float(np.median(self._recent))
        out = ema(steady, self.weight, self._ema)
        self._ema = float(out[-1]) if len(out) else self._ema
        return out


def ema(raw: np.ndarray, weight: float, start: float | None = None) -> np.ndarray:
    """Causal exponential moving average; `start` continues a previous run."""
    out = np.empty_like(raw)
    acc = start
    for i, v in enumerate(raw):
        acc = float(v) if acc is None else weight * float(v) + (1 - weight) * acc
        out[i] = acc
    return out
