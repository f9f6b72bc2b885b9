"""What normal looks like, per cell and per cue, measured on normal footage: each cue's baseline (the
common scale every cue is brought to before they are combined), the usual headings, and the alarm
calibration of the frame score.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from stream_detector.config import DetectorConfig
from stream_detector.model import CUES, LEARNED

HEADING_BINS = 8


def active_baseline(values: np.ndarray, active: np.ndarray, quantile: float,
                    row_prior: float) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of a motion cue from (n, rows, cols) values of normal footage.

    center: the cell's median (what it shows when nothing happens). scale: the cell's `quantile`
    among the frames where something was there (`active`), minus the center: how strong the cue is
    for the things that normally move through the cell, however rarely they do; a cell's 99th
    percentile over all frames instead measures how often they come, and turns the first walker in a
    quiet corner into an alarm. With little footage a cell has few active frames, so its value is
    shrunk toward its row's (one row ~ one distance from a fixed camera) with the weight of
    `row_prior` frames; rows with no activity take their nearest active rows' value.
    """
    center = np.median(values, 0)
    rows = values.shape[1]
    row_q = np.full(rows, np.nan)
    for r in range(rows):
        seen = values[:, r][active[:, r]]
        if seen.size >= 20:
            row_q[r] = np.quantile(seen, quantile)
    known = ~np.isnan(row_q)
    if known.any():
        row_q = np.interp(np.arange(rows), np.nonzero(known)[0], row_q[known])
    else:  # nothing ever moved: the plain quantile over all frames
        row_q = np.quantile(values.reshape(len(values), rows, -1), quantile, axis=(0, 2))
    count = active.sum(0).astype(np.float64)
    cell_q = np.where(count > 0, _masked_quantile(values, active, quantile), row_q[:, None])
    estimate = (count * cell_q + row_prior * row_q[:, None]) / (count + row_prior)
    scale = estimate - center
    scale = np.maximum(scale, 0.25 * float(np.median(scale)) + 1e-6)  # no cell judged by noise alone
    scale = cv2.GaussianBlur(scale.astype(np.float32), (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)
    return center.astype(np.float32), scale


def _masked_quantile(values: np.ndarray, mask: np.ndarray, quantile: float) -> np.ndarray:
    """Per cell, the quantile of values where mask is set (0 where it never is)."""
    out = np.zeros(values.shape[1:])
    for r, c in zip(*np.nonzero(mask.any(0))):
        out[r, c] = np.quantile(values[:, r, c][mask[:, r, c]], quantile)
    return out


def floored_baseline(values: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of a scene cue: the cell's median and 99th percentile, with a least scale
    in the cue's own units (a share of the cell, seconds), so a cell where normal footage never
    had anything standing is judged on a fixed yardstick rather than on its noise."""
    center = np.median(values, 0)
    scale = np.maximum(np.quantile(values, 0.99, axis=0) - center, floor).astype(np.float32)
    scale = cv2.GaussianBlur(scale, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE)
    return center.astype(np.float32), scale


def cue_baselines(held_back: np.ndarray, seen: np.ndarray,
                  cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-cue, per-cell (center, scale) from (n, K, rows, cols) cues of normal footage: z = (cue -
    center) / scale puts every cue on one scale (0 typical, 1 the cell's rare normal high).

    Every cell's baseline is measured on all the footage (held-back and training blocks), since a
    cell needs many frames with something in it. The network's errors are lower on the blocks it
    trained on, so a learned cue's baseline is then raised by the factor its errors are higher on
    the held-back blocks, footage it never saw, as it will never have seen the live stream (one
    factor for the whole picture: the held-back blocks say how much, all blocks say where).
    Activity (something in the cell) is the occupancy cue.
    """
    every = np.concatenate([held_back, seen]) if len(seen) else held_back
    occupancy = CUES.index("occupancy")
    def active(values: np.ndarray) -> np.ndarray:
        return values[:, occupancy] > cfg.active_share if cfg.scene else np.ones_like(values[:, 0], bool)
    centers, scales = [], []
    for k, name in enumerate(CUES):
        if name == "occupancy":
            center, scale = floored_baseline(every[:, k], cfg.occupancy_floor)
        elif name == "dwell":
            center, scale = floored_baseline(every[:, k], cfg.dwell_floor)
        else:
            center, scale = active_baseline(every[:, k], active(every), cfg.baseline_quantile, cfg.row_prior)
            if LEARNED[k] and len(seen):
                factor = unseen_factor(held_back[:, k][active(held_back)], every[:, k][active(every)],
                                       cfg.baseline_quantile)
                center, scale = center * factor, scale * factor
        centers.append(center)
        scales.append(scale)
    return np.stack(centers), np.stack(scales)


def unseen_factor(held_back: np.ndarray, every: np.ndarray, quantile: float) -> float:
    """How much higher a learned cue runs on footage the network never trained on: the ratio of
    its high quantile on the held-back blocks to that on all blocks, within 1..10."""
    if held_back.size < 20 or every.size < 20:
        return 1.0
    ratio = float(np.quantile(held_back, quantile)) / max(float(np.quantile(every, quantile)), 1e-12)
    return float(min(10.0, max(1.0, ratio)))


def heading_weights(flows: np.ndarray, prior: float = 0.02) -> np.ndarray:
    """(BINS, rows, cols) how unusual each heading is at each cell: 0 for the cell's most common
    heading in normal footage, up to 1 for one never seen; flows: (n, 2, rows, cols) each cell's
    mean flow over a window. Headings are counted weighted by speed (a still cell's jitter has no
    heading), shared with the 8 neighbouring cells (a walker's path is wider than a cell), and
    mixed with a small uniform prior."""
    speed = np.sqrt((flows ** 2).sum(1))
    pos = (np.arctan2(flows[:, 1], flows[:, 0]) % (2 * math.pi)) / (2 * math.pi) * HEADING_BINS
    low = np.floor(pos).astype(int) % HEADING_BINS
    frac = pos - np.floor(pos)
    hist = np.zeros((HEADING_BINS,) + flows.shape[2:])
    for b in range(HEADING_BINS):
        hist[b] = (speed * (1 - frac) * (low == b)).sum(0) + (speed * frac * ((low + 1) % HEADING_BINS == b)).sum(0)
    hist = np.stack([cv2.blur(h, (3, 3), borderType=cv2.BORDER_REPLICATE) for h in hist.astype(np.float32)])
    share = hist / np.maximum(hist.sum(0, keepdims=True), 1e-9)
    share = (1 - prior) * share + prior / HEADING_BINS
    return (1 - share / share.max(0, keepdims=True)).astype(np.float32)


def onset_rate(scores: list[np.ndarray], u: float, fps: float) -> float:
    """Alarm onsets per hour above u: upward crossings, a clip starting above u counts once."""
    onsets = sum(int(s[0] > u) + int(np.sum((s[1:] > u) & (s[:-1] <= u))) for s in scores)
    hours = sum(len(s) for s in scores) / fps / 3600.0
    return onsets / hours


def fit_tail(scores: list[np.ndarray], fps: float) -> dict[str, float]:
    """Fit log(onsets per hour above u) = a - u / beta over the upper tail of normal scores.

    Onsets fade more slowly than the scores' own tail (an excursion above u is one onset however
    long it lasts), but from a few minutes of footage a handful of long excursions can make the
    fitted fade almost flat and the extrapolated threshold absurd (a 20 s block once gave 21.8
    against a highest score of 1.44). So beta is at most twice the mean excess of the scores over
    their 80th percentile (an exponential tail's own scale), and `a` is refitted under that beta.
    """
    allv = np.concatenate(scores)
    grid = np.unique(np.quantile(allv, np.linspace(0.80, 0.999, 40)))
    pts = [(u, onset_rate(scores, float(u), fps)) for u in grid]
    pts = [(u, r) for u, r in pts if r > 0]
    beta = float(np.std(allv) or 1.0)
    a = math.log(pts[0][1]) + pts[0][0] / beta if pts else 0.0
    if len(pts) >= 3:
        us = np.array([p[0] for p in pts])
        logs = np.log([p[1] for p in pts])
        slope, intercept = np.polyfit(us, logs, 1)
        if slope < 0:
            beta, a = -1.0 / float(slope), float(intercept)
        excess = allv[allv > grid[0]] - grid[0]
        most = 2.0 * float(excess.mean()) if excess.size else beta
        if beta > most > 0:
            beta, a = most, float(np.mean(logs + us / most))
    return {"a": a, "beta": beta, "floor": float(allv.max()), "fps": fps,
            "normal_frames": int(allv.size), "normal_hours": allv.size / fps / 3600.0}
