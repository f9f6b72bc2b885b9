"""Scoring: windows of preprocessed frames -> per-cell scores against the baseline -> frame score.

Causal by construction: the window for frame t holds frames <= t only (the slicer pads the first
windows with frame 0), frame t's motion is its flow from t-1, and smoothing is an exponential
moving average over past scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stream_detector.buffer import FeatureRing
from stream_detector.motion import MotionField, with_motion
from stream_detector.slicer import SpacetimeSlicer


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a run of consecutive frames of one stream."""

    first_index: int
    cell_error: np.ndarray  # (n, K, rows, cols) raw per-cell cues (model/network.py CUES)
    cell_score: np.ndarray  # (n, rows, cols) cues against the baseline, combined
    raw_score: np.ndarray  # (n,) top-k cell score
    score: np.ndarray  # (n,) causally smoothed frame score
    warmup: np.ndarray  # (n,) bool, window still padded with frame 0


class WindowScorer:
    """Scores one stream chunk by chunk; every frame is encoded (and its motion computed) once.

    `detector` is the exported module (TorchScript) or its eager twin: anything with `encode`,
    `spatial_channels`, `motion_channels` and forward(frames, features, windows) returning
    (prediction, cell_error, cell_score, frame_score).
    """

    def __init__(self, detector: Any, slicer: SpacetimeSlicer, smoothing: float,
                 device: torch.device, chunk: int = 8, top_k: int = 1,
                 ignore: np.ndarray | None = None, frames_carry_motion: bool = False) -> None:
        self.detector = detector
        self.slicer = slicer
        self.smoothing = smoothing
        self.device = device
        self.chunk = chunk
        # Fitting passes frames whose flow it computed once for training; live frames get it here.
        wants_motion = bool(int(detector.motion_channels)) and not frames_carry_motion
        self.motion = MotionField() if wants_motion else None
        self.ring = FeatureRing(slicer.window - 1)
        self._ema: float | None = None
        # (rows, cols) True = never counts (operator's masks); the frame score is then recomputed
        # here from the remaining cells, so the exported model stays camera-independent.
        self.ignore = ignore if ignore is not None and ignore.any() else None
        self.top_k = top_k if self.ignore is None else max(1, min(top_k, int((~ignore).sum())))

    def reset(self) -> None:
        """Forget the stream (after a reconnect the old frames are no longer its past)."""
        self.ring.clear()
        if self.motion is not None:
            self.motion.reset()
        self._ema = None

    @torch.no_grad()
    def push(self, frames: np.ndarray) -> ScoreBatch:
        """Score (n, C, H, W) (or (n, H, W) gray) preprocessed frames that follow earlier pushes."""
        if frames.ndim == 3:
            frames = frames[:, None]
        if self.motion is not None:
            frames = with_motion(frames, self.motion)
        first = self.ring.seen
        parts = [self._push_chunk(frames[i:i + self.chunk]) for i in range(0, len(frames), self.chunk)]
        cell_error = np.concatenate([p[0] for p in parts])
        cell_score = np.concatenate([p[1] for p in parts])
        raw = np.concatenate([p[2] for p in parts])
        if self.ignore is not None:
            cell_score = np.where(self.ignore, -np.inf, cell_score)
            raw = frame_scores(cell_score, self.top_k)
        smooth = ema(raw, self.smoothing, self._ema)
        self._ema = float(smooth[-1]) if len(smooth) else self._ema
        idx = np.arange(first, first + len(raw))
        warmup = idx < self.slicer.window - 1
        return ScoreBatch(first, cell_error, cell_score, raw, smooth, warmup)

    def _push_chunk(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(self.device)
        feats = self.detector.encode(x)
        history = len(self.ring)
        offset = self.ring.seen - history  # global index of all_x[0]
        if history:
            assert self.ring.frames is not None and self.ring.features is not None
            all_x = torch.cat([self.ring.frames, x])
            all_f = torch.cat([self.ring.features, feats])
        else:
            all_x, all_f = x, feats
        targets = range(self.ring.seen, self.ring.seen + len(frames))
        windows = torch.tensor([self.slicer.window_indices(t) for t in targets], device=self.device)
        out = self.detector(all_x, all_f, windows - offset)
        self.ring.extend(x, feats)
        return (out[1].cpu().numpy(), out[2].cpu().numpy(), out[3].cpu().numpy())


def score_frames(detector: Any, slicer: SpacetimeSlicer, smoothing: float,
                 device: torch.device, frames: np.ndarray) -> ScoreBatch:
    """Score a whole clip from its first frame."""
    return WindowScorer(detector, slicer, smoothing, device).push(frames)


def firing_cells(cell_score: np.ndarray, threshold: float) -> np.ndarray:
    """Cells over the threshold; if none (a smoothed frame score can exceed it alone), the top cell."""
    mask = cell_score > threshold
    if not mask.any():
        mask = np.zeros_like(mask)
        mask[np.unravel_index(int(np.argmax(cell_score)), cell_score.shape)] = True
    return mask


def frame_scores(cell_score: np.ndarray, top_k: int) -> np.ndarray:
    """(n, rows, cols) -> (n,) mean of the k highest cell scores of each frame."""
    flat = cell_score.reshape(len(cell_score), -1)
    k = min(top_k, flat.shape[1])
    return np.sort(flat, axis=1)[:, -k:].mean(1)


def ema(raw: np.ndarray, weight: float, start: float | None = None) -> np.ndarray:
    """Causal exponential moving average; `start` continues a previous run."""
    out = np.empty_like(raw)
    acc = start
    for i, v in enumerate(raw):
        acc = float(v) if acc is None else weight * float(v) + (1 - weight) * acc
        out[i] = acc
    return out
