"""Targeted widening: only the (cue, cell) pairs that carried a false alarm over the threshold grow,
only as far as keeps its smoothed score under the target, only for the event's own frames; and the
numpy frame score it reasons with is the exported module's."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detector.config import DEFAULT_MODEL
from stream_detector.detect import ScoreSmoother
from stream_detector.model import CUES, load
from stream_detector.offline import frame_score
from stream_detector.offline.tune import baseline_of
from stream_detector.offline.widen import Baseline, Judged, fitted_factors

SPEED, MOTION_ERROR, OCCUPANCY, DWELL = (CUES.index(c) for c in ("speed", "motion_error",
                                                                  "occupancy", "dwell"))
ROWS, COLS, N = 8, 10, 40
THRESHOLD, TARGET, SMOOTHING = 1.5, 1.2, 0.5


def baseline() -> Baseline:
    """Every cue centred at 0 with scale 1 everywhere, weighted as the default fit weighs them."""
    k = len(CUES)
    return Baseline(np.zeros((k, ROWS, COLS)), np.ones((k, ROWS, COLS)),
                    np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0]),
                    np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]), 3)


def reported(base: Baseline, cues: np.ndarray) -> np.ndarray:
    return ScoreSmoother(SMOOTHING)(base.frame_scores(cues))


def widened_by(base: Baseline, factor: np.ndarray) -> Baseline:
    return Baseline(base.center, base.scale * factor, base.weights, base.static, base.region)


def quiet() -> np.ndarray:
    return np.zeros((N, len(CUES), ROWS, COLS))


def test_only_the_cue_and_cells_that_fired_widen_and_only_as_far_as_needed() -> None:
    cues = quiet()
    cues[10:30, SPEED, 1:4, 1:4] = 3.0  # one walker-sized region: speed alone, well over
    cues[10:30, MOTION_ERROR, 1:4, 1:4] = -0.5  # under its usual level there: not a cause
    cues[10:30, SPEED, 4:7, 6:9] = 1.35  # another region over the target but never the threshold
    cues[10:30, OCCUPANCY, 6, 2] = 2.6  # a scene cell just under the threshold (weight 0.5: 1.3)
    base = baseline()
    assert reported(base, cues).max() > THRESHOLD
    factor = fitted_factors(base, [Judged(cues, 0, N - 1)], THRESHOLD, TARGET, SMOOTHING, spread=0)
    grown = np.argwhere(factor > 1.0)
    assert {tuple(g) for g in grown} == {(SPEED, y, x) for y in range(1, 4) for x in range(1, 4)}
    after = widened_by(base, factor)
    # the fired region now scores the target; the region that never fired keeps its 1.35
    motion, scene = after.parts(cues[20:21])
    assert motion[0, 1, 1] == pytest.approx(TARGET, abs=0.01)
    assert motion[0, 4, 6] == pytest.approx(1.35)
    assert scene[0, 6, 2] == pytest.approx(1.3)
    assert reported(after, cues).max() < THRESHOLD


def test_the_widening_reaches_one_cell_around_what_fired() -> None:
    cues = quiet()
    cues[5:35, DWELL, 4, 5] = 2.0  # something stood in one cell
    factor = fitted_factors(baseline(), [Judged(cues, 0, N - 1)], THRESHOLD, TARGET, SMOOTHING)
    assert {tuple(g) for g in np.argwhere(factor > 1.0)} == \
        {(DWELL, y, x) for y in range(3, 6) for x in range(4, 7)}
    assert factor[DWELL, 4, 5] == pytest.approx(2.0 / TARGET, rel=0.01)
    assert (factor[DWELL, 3:6, 4:7] == factor[DWELL, 4, 5]).all()


def test_a_short_burst_is_weakened_only_as_far_as_the_smoothed_score_needs() -> None:
    cues = quiet()
    cues[20:23, SPEED, 2:5, 2:5] = 4.0  # three frames far over: the median and average soften it
    base = baseline()
    assert reported(base, cues).max() > THRESHOLD
    factor = fitted_factors(base, [Judged(cues, 0, N - 1)], THRESHOLD, TARGET, SMOOTHING, spread=0)
    after = reported(widened_by(base, factor), cues)
    assert after.max() == pytest.approx(TARGET, abs=0.01)
    assert factor.max() < 4.0 / TARGET * 0.9  # less than bringing every frame to the target


def test_frames_outside_the_event_teach_nothing() -> None:
    cues = quiet()
    cues[2:12, SPEED, 1:4, 1:4] = 3.0  # pre-capture: not what the operator judged
    cues[25:35, OCCUPANCY, 5, 7] = 4.0  # the event itself
    factor = fitted_factors(baseline(), [Judged(cues, 24, 36)], THRESHOLD, TARGET, SMOOTHING,
                            spread=0)
    assert {tuple(g) for g in np.argwhere(factor > 1.0)} == {(OCCUPANCY, 5, 7)}
    nothing = fitted_factors(baseline(), [Judged(quiet(), 0, N - 1)], THRESHOLD, TARGET, SMOOTHING)
    assert (nothing == 1.0).all()


def test_the_numpy_frame_score_is_the_modules() -> None:
    model = load(DEFAULT_MODEL, "cpu")
    base = baseline_of(model.module)
    rng = np.random.default_rng(0)
    cues = (base.center + base.scale * rng.gamma(1.0, 1.0, (16, *base.center.shape))).astype(np.float32)
    np.testing.assert_allclose(base.frame_scores(cues), frame_score(model.module, cues),
                               rtol=1e-4, atol=1e-4)
