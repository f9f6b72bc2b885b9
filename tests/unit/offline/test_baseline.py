"""Baselines: every cue brought to one scale per cell; headings; the alarm calibration's inputs."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detector.config import DetectorConfig
from stream_detector.model import CUES
from stream_detector.offline.baseline import (
    HEADING_BINS,
    active_baseline,
    cue_baselines,
    floored_baseline,
    heading_weights,
    unseen_factor,
)


def test_a_motion_cue_is_judged_by_what_moves_through_the_cell_not_how_often() -> None:
    """Two cells see the same walkers (value 1.0 when one is there), one in 2 % of frames, one in
    40 %: both get the same scale, so a walker is as normal in the quiet cell as in the busy one;
    the plain 99th percentile would call the quiet cell's walkers 1 / 0 = huge."""
    rng = np.random.default_rng(0)
    n = 5000
    values = rng.normal(0.0, 0.01, (n, 1, 2)).clip(0)
    active = np.zeros((n, 1, 2), bool)
    active[rng.random(n) < 0.02, 0, 0] = True
    active[rng.random(n) < 0.40, 0, 1] = True
    values[active] = rng.normal(1.0, 0.05, int(active.sum()))
    center, scale = active_baseline(values, active, quantile=0.98, row_prior=0.0)
    assert center[0, 0] == pytest.approx(0.0, abs=0.02)
    assert scale[0, 0] == pytest.approx(scale[0, 1], rel=0.05)
    assert scale[0, 0] == pytest.approx(1.1, abs=0.06)


def test_a_cell_with_little_footage_leans_on_its_row() -> None:
    rng = np.random.default_rng(1)
    active = rng.random((1000, 8, 6)) < 0.1  # something passes each cell in a tenth of the frames
    active[:, 1, 5] = False  # ... but never this one
    speed = np.where(np.arange(8) < 4, 2.0, 1.0)[None, :, None]  # far rows 2, near rows 1 (perspective)
    values = np.where(active, speed, 0.0)
    _, scale = active_baseline(values, active, quantile=0.98, row_prior=50.0)
    assert scale[1, 5] > 1.6  # borrowed its row's 2.0, not the near rows' 1 or a global floor
    assert scale[6].mean() < 1.2 < 1.8 < scale[1].mean()


def test_scene_cues_have_a_least_scale_in_their_own_units() -> None:
    values = np.zeros((100, 1, 2), np.float32)
    values[:, 0, 1] = np.linspace(0, 10, 100)  # a cell where people stand up to 10 s
    center, scale = floored_baseline(values, floor=2.0)
    assert center[0, 0] == 0.0 and scale[0, 0] >= 2.0 - 1e-6  # never anything: the floor
    assert scale[0, 1] > 2.0  # the standing place: its own 99th percentile, blurred


def test_learned_cues_are_raised_to_their_level_on_unseen_footage() -> None:
    """All blocks say where a learned cue is high, the held-back blocks how high: the network's
    error on its own training blocks is optimistic."""
    cfg = DetectorConfig()
    rows, cols, k = 3, 3, len(CUES)
    rng = np.random.default_rng(0)
    held = np.zeros((300, k, rows, cols), np.float32)
    seen = np.zeros((900, k, rows, cols), np.float32)
    for part, level in ((held, 2.0), (seen, 1.0)):
        part[:, CUES.index("occupancy")] = rng.random(part[:, 0].shape) < 0.2  # a fifth active
        part[:, CUES.index("motion_error")] = level * part[:, CUES.index("occupancy")]
        part[:, CUES.index("speed")] = 3.0 * part[:, CUES.index("occupancy")]
    center, scale = cue_baselines(held, seen, cfg)
    m, s = CUES.index("motion_error"), CUES.index("speed")
    assert scale[m].mean() == pytest.approx(2.0, rel=0.05)  # the held-back level, not the mix's 1.x
    assert scale[s].mean() == pytest.approx(3.0, rel=0.05)  # measured: no such factor
    assert unseen_factor(np.ones(10), np.ones(10), 0.98) == 1.0  # too few frames to tell


def test_headings_never_seen_at_a_cell_weigh_most() -> None:
    flows = np.zeros((200, 2, 3, 3), np.float32)
    flows[:, 0] = 1.0  # everything moves right (+x)
    w = heading_weights(flows)
    assert w.shape == (HEADING_BINS, 3, 3)
    assert w[0].max() < 0.05  # rightward: the usual heading
    assert w[HEADING_BINS // 2].min() > 0.9  # leftward: never seen
