"""Which baseline scales a false alarm needs widened, and by how much: only the (cue, cell) pairs
whose z-scores carried its frames over the threshold, each only as far as keeps its reported score
under a target. The arithmetic of the exported module's `score_cells`, redone in numpy by parts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from stream_detector.detect import ScoreSmoother

NEVER = -1.0e4  # the score of a region or cell left out (as score_cells scores a masked one)


@dataclass(frozen=True)
class Baseline:
    """The buffers a frame score is made of (model/detector.py SpacetimeDetector.score_cells)."""

    center: np.ndarray  # (K, rows, cols)
    scale: np.ndarray  # (K, rows, cols)
    weights: np.ndarray  # (K,)
    static: np.ndarray  # (K,) 1: a scene cue, scored cell by cell; 0: a motion cue, over a region
    region: int  # motion cues are averaged over region x region cells

    def z(self, cues: np.ndarray) -> np.ndarray:
        """(n, K, rows, cols) raw cues -> weighted z-scores, the terms a cell's score sums."""
        return (cues - self.center) / self.scale * self.weights[None, :, None, None]

    def side(self) -> int:
        return min(self.region, self.center.shape[1], self.center.shape[2])

    def parts(self, cues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, K, rows, cols) raw cues -> the scores a frame score is the highest of: each motion
        region's (n, rows - r + 1, cols - r + 1) and each scene cell's (n, rows, cols; NEVER where
        no scene cue counts)."""
        z = self.z(cues)
        motion = _regions((z * (1 - self.static)[None, :, None, None]).sum(1), self.side())
        scene = (z * self.static[None, :, None, None]).sum(1)
        if not (self.weights * self.static).sum() > 0:
            scene = np.full_like(scene, NEVER)
        return motion, scene

    def frame_scores(self, cues: np.ndarray, skip: Fired | None = None) -> np.ndarray:
        """(n,) raw frame scores, as score_cells gives them with no cell masked; with `skip`, the
        score the frames would have without those regions and cells."""
        motion, scene = self.parts(cues)
        if skip is not None:
            motion = np.where(skip.motion, NEVER, motion)
            scene = np.where(skip.scene, NEVER, scene)
        return np.maximum(motion.reshape(len(motion), -1).max(1), scene.reshape(len(scene), -1).max(1))


@dataclass(frozen=True)
class Fired:
    """The motion regions (by their top-left cell) and scene cells that carried a false alarm's
    score over the threshold."""

    motion: np.ndarray  # (rows - r + 1, cols - r + 1) bool
    scene: np.ndarray  # (rows, cols) bool

    def any(self) -> bool:
        return bool(self.motion.any() or self.scene.any())


def steady(raw: np.ndarray) -> np.ndarray:
    """The median of each frame's raw score and the two before it (detect/scoring.py
    ScoreSmoother, before its moving average): what a reported score is a running mean of."""
    out = np.empty_like(raw)
    for i in range(len(raw)):
        out[i] = np.median(raw[max(0, i - 2):i + 1])
    return out


def alarming(raw: np.ndarray, target: float) -> np.ndarray:
    """Frames over `target` that keep the clip's steady score over it: the over-target frames of
    every 3-frame run whose median is over. A lone frame over it is dropped by the median anyway
    and needs nothing; once no steady score is over, no reported score is (a moving average)."""
    over = steady(raw) > target
    out = np.zeros(len(raw), bool)
    for i in np.nonzero(over)[0]:
        out[max(0, i - 2):i + 1] = True
    return out & (raw > target)


@dataclass(frozen=True)
class Judged:
    """A false alarm's clip as tuning sees it: its raw cues, and the frames the event spanned
    (the operator judged those; the pre- and post-capture around them is context, not alarmed)."""

    cues: np.ndarray  # (n, K, rows, cols)
    first: int
    last: int  # inclusive

    def span(self, values: np.ndarray) -> np.ndarray:
        return values[max(0, self.first):self.last + 1]

    def judged(self, n: int) -> np.ndarray:
        """(n,) the event's frames and the two before (a frame's median reaches them)."""
        out = np.zeros(n, bool)
        out[max(0, self.first - 2):max(0, self.last + 1)] = True
        return out


def fitted_factors(base: Baseline, alarms: list[Judged], threshold: float, target: float,
                   smoothing: float, spread: int = 1, steps: int = 24) -> np.ndarray:
    """(K, rows, cols) factors >= 1 by which each scale must grow so that, while each false
    alarm's event lasted, the regions and cells that fired no longer carry its reported score (its
    frame scores smoothed as the daemon smooths them) over `target` (< `threshold`).

    What fired: the regions and cells over the threshold (or over the clip's own highest score,
    when the clip, scored without the stream's longer past, stays under it) in the event's frames.
    Only their terms are weakened, until the score they give the event is under the target; the
    regions that did not fire stay as they were (under the threshold already). Each clip gets the
    highest cap on the fired regions' scores that is enough (`needed_factors`, found by
    bisection): a burst of a few frames far over the target needs its frames brought only as low
    as keeps the smoothed score under it. A pair asked by several clips takes the largest factor
    asked, and each factor reaches `spread` cells around its own (cells overlap by half: what
    stood or moved there is seen one cell over the next time)."""
    factor = np.ones_like(base.scale, dtype=np.float32)
    for alarm in alarms:
        reported = alarm.span(_reported(base, alarm.cues, smoothing))
        if not len(reported) or reported.max() <= target:
            continue
        fired = _fired(base, alarm, min(threshold, float(reported.max())))
        if not fired.any():
            continue
        others = Fired(~fired.motion, ~fired.scene)  # judged apart: they did not fire
        low, high = target, float(alarm.span(base.frame_scores(alarm.cues)).max())
        best = needed_factors(base, alarm, low, fired)  # the target itself is always enough
        for _ in range(steps):
            mid = 0.5 * (low + high)
            need = needed_factors(base, alarm, mid, fired)
            if alarm.span(_reported(_widened(base, need), alarm.cues, smoothing, others)).max() \
                    <= target:
                low, best = mid, need
            else:
                high = mid
        factor = np.maximum(factor, best)
    if spread > 0:
        kernel = np.ones((2 * spread + 1, 2 * spread + 1), np.uint8)
        factor = np.stack([cv2.dilate(f, kernel, borderType=cv2.BORDER_REPLICATE) for f in factor])
    return factor


def _fired(base: Baseline, alarm: Judged, level: float) -> Fired:
    """The regions and cells over `level` in the event's frames that kept its steady score over
    it (at the clip's own highest steady score, if that is lower)."""
    raw = base.frame_scores(alarm.cues)
    judged = alarm.judged(len(raw))
    level = min(level, float(steady(raw)[judged].max())) * (1 - 1e-6)
    frames = np.nonzero(alarming(raw, level) & judged)[0]
    motion, scene = base.parts(alarm.cues[frames])
    return Fired((motion > level).any(0), (scene > level).any(0))


def _reported(base: Baseline, cues: np.ndarray, smoothing: float,
              skip: Fired | None = None) -> np.ndarray:
    return ScoreSmoother(smoothing)(base.frame_scores(cues, skip))


def _widened(base: Baseline, factor: np.ndarray) -> Baseline:
    return dataclasses.replace(base, scale=base.scale * factor)


def needed_factors(base: Baseline, alarm: Judged, cap: float, fired: Fired) -> np.ndarray:
    """(K, rows, cols) factors >= 1 by which each scale must grow so that no fired region or cell
    scores over `cap` (> 0) in the frames of the event that keep its steady score over it.

    Each such region or cell has its positive terms (weighted z-scores of its cues and cells)
    scaled down by one factor, so that it comes down to the cap: the false alarm's mix of cues is
    kept, only weaker, so a stronger showing of the same thing is weakened as much. Other cues,
    other cells and negative terms (a cue under its usual level) are left as they were. A pair
    asked by several frames or regions takes the largest factor asked."""
    factor = np.ones_like(base.scale, dtype=np.float64)
    r = base.side()
    motion = np.nonzero((base.static == 0) & (base.weights > 0))[0]
    scene = np.nonzero((base.static > 0) & (base.weights > 0))[0]
    frames = np.nonzero(alarming(base.frame_scores(alarm.cues), cap)
                        & alarm.judged(len(alarm.cues)))[0]
    if not len(frames):
        return factor.astype(np.float32)
    z = base.z(alarm.cues[frames]).astype(np.float64)
    if len(motion):  # terms (frame, region y, x, cue, dy, dx): a region's mean of its cells
        regions = _regions(z[:, motion].sum(1), r)
        n, y, x = np.nonzero((regions > cap) & fired.motion[None])
        dy, dx = np.divmod(np.arange(r * r), r)
        ys, xs = y[:, None, None] + dy[None, None, :], x[:, None, None] + dx[None, None, :]
        terms = z[n[:, None, None], motion[None, :, None], ys, xs] / (r * r)
        width = len(motion) * r * r
        _shrink(factor, terms.reshape(len(n), width),
                np.broadcast_to(motion[None, :, None], terms.shape).reshape(len(n), width),
                np.broadcast_to(ys, terms.shape).reshape(len(n), width),
                np.broadcast_to(xs, terms.shape).reshape(len(n), width), cap)
    if len(scene):
        n, y, x = np.nonzero((z[:, scene].sum(1) > cap) & fired.scene[None])
        terms = z[n[:, None], scene[None, :], y[:, None], x[:, None]]
        _shrink(factor, terms, np.broadcast_to(scene[None, :], terms.shape),
                np.broadcast_to(y[:, None], terms.shape),
                np.broadcast_to(x[:, None], terms.shape), cap)
    return factor.astype(np.float32)


def _shrink(factor: np.ndarray, terms: np.ndarray, ks: np.ndarray, ys: np.ndarray, xs: np.ndarray,
            cap: float) -> None:
    """Rows of terms (one region or cell over the cap each) brought down to it by dividing their
    positive terms by one factor; the factors are merged into `factor` (largest wins)."""
    if not len(terms):
        return
    positive = np.maximum(terms, 0.0).sum(1)
    budget = cap - np.minimum(terms, 0.0).sum(1)  # negative terms stay: they lower the sum
    need = np.where(terms > 0, (positive / budget)[:, None], 1.0)
    np.maximum.at(factor, (ks.ravel(), ys.ravel(), xs.ravel()), need.ravel())


def _regions(cells: np.ndarray, r: int) -> np.ndarray:
    """(n, rows, cols) -> (n, rows - r + 1, cols - r + 1) mean of every r x r block of cells."""
    n, rows, cols = cells.shape
    out = np.zeros((n, rows - r + 1, cols - r + 1), np.float64)
    for dy in range(r):
        for dx in range(r):
            out += cells[:, dy:dy + rows - r + 1, dx:dx + cols - r + 1]
    return out / (r * r)
