"""Window scoring: cell errors, causality, chunked streaming, ignored cells, top-k and smoothing,
streams scored together in one call, and a failed joint call that changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_detector, frames, tiny_config

from stream_detector.detect import (
    WindowScorer,
    ScoreSmoother,
    ema,
    score_frames,
    score_together,
)
from stream_detector.model import FeatureBank


def test_cell_errors_match_brute_force_means() -> None:
    det, slicer = build_detector(tiny_config(width=70, height=48))
    err = torch.rand(2, 48, 70)
    cells = det.cell_means(err)
    y0, y1, x0, x1 = slicer.cell_edges()
    for r in range(slicer.grid[0]):
        for c in range(slicer.grid[1]):
            want = err[1, y0[r]:y1[r], x0[c]:x1[c]].mean()
            assert float(cells[1, r, c]) == pytest.approx(float(want), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("pretext", ["predict", "reconstruct", "motion"])
def test_scores_are_causal(pretext: str) -> None:
    det, slicer = build_detector(tiny_config(pretext=pretext))
    a, b = frames(20, seed=1), frames(20, seed=2)
    b[:12] = a[:12]  # same past, different future from frame 12 on
    sa = score_frames(det, slicer, 0.5, torch.device("cpu"), a)
    sb = score_frames(det, slicer, 0.5, torch.device("cpu"), b)
    np.testing.assert_allclose(sa.score[:12], sb.score[:12], rtol=1e-5)
    assert not np.allclose(sa.score[12:], sb.score[12:])


def test_chunked_streaming_equals_whole_clip() -> None:
    det, slicer = build_detector(tiny_config())
    x = frames(25)
    whole = score_frames(det, slicer, 0.5, torch.device("cpu"), x)
    live = WindowScorer(det, slicer, 0.5, torch.device("cpu"), chunk=4)
    parts = [live.push(x[i:i + 3]) for i in range(0, 25, 3)]
    np.testing.assert_allclose(np.concatenate([p.score for p in parts]), whole.score, rtol=1e-5, atol=1e-6)
    assert whole.warmup.tolist() == [True] * 3 + [False] * 22


def test_ignored_cells_never_count() -> None:
    det, slicer = build_detector(tiny_config())
    x = frames(10)
    x[6:, 8:24, 8:24] = 1.0  # a sudden bright block in cell (1, 1) and its neighbours
    plain = score_frames(det, slicer, 1.0, torch.device("cpu"), x)
    ignore = np.zeros(slicer.grid, bool)
    ignore[:3, :3] = True
    masked = WindowScorer(det, slicer, 1.0, torch.device("cpu"), ignore=ignore).push(x)
    assert masked.score[6] < plain.score[6]
    assert np.isneginf(masked.cell_score[:, :3, :3]).all()


def test_causal_ema() -> None:
    np.testing.assert_allclose(ema(np.array([0.0, 10.0, 10.0]), 0.5), [0.0, 5.0, 7.5])
    np.testing.assert_allclose(ema(np.array([4.0]), 0.5, start=2.0), [3.0])


def test_one_frame_s_glitch_is_not_reported_what_lasts_two_frames_is() -> None:
    raw = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 9.0, 9.0, 0.0, 0.0])
    whole = ScoreSmoother(1.0)(raw)  # no EMA: the median of three alone
    np.testing.assert_allclose(whole, [0, 0, 0, 0, 0, 0, 9, 9, 0])
    smoother = ScoreSmoother(0.5)  # chunks continue the stream
    np.testing.assert_allclose(np.concatenate([smoother(raw[:4]), smoother(raw[4:])]), ScoreSmoother(0.5)(raw))


def test_streams_scored_together_equal_each_scored_alone() -> None:
    det, slicer = build_detector(tiny_config(pretext="motion"))
    clips = [frames(14, seed=s) for s in (3, 4, 5)]
    alone = [WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(c) for c in clips]
    bank = FeatureBank(slicer.window - 1, new=8)
    joint = [WindowScorer(det, slicer, 0.5, torch.device("cpu"), bank=bank) for _ in clips]
    inputs = [s.model_input(c) for s, c in zip(joint, clips)]
    # Uneven steps per stream, and a stream that joins late: each keeps its own history.
    steps = [(0, 3, 2), (3, 4, 0), (4, 9, 6), (9, 14, 14)]
    got: list[list[np.ndarray]] = [[], [], []]
    start = [0, 0, 0]
    for _, end_a, end_c in steps:
        ends = [end_a, end_a, end_c]
        members = [i for i in range(3) if ends[i] > start[i]]
        out = score_together([joint[i] for i in members], [inputs[i][start[i]:ends[i]] for i in members])
        for i, b in zip(members, out):
            got[i].append(b.score)
            start[i] = ends[i]
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), alone[i].score, rtol=1e-5, atol=1e-6)


def test_a_failed_joint_call_leaves_every_stream_unchanged() -> None:
    det, slicer = build_detector(tiny_config(pretext="motion"))

    class Faulty(torch.nn.Module):  # the real detector, whose forward fails when told to
        def __init__(self) -> None:
            super().__init__()
            self.det, self.fail = det, False
            self.encode, self.motion_channels = det.encode, det.motion_channels
            self.scene_channels, self.scene_times = det.scene_channels, det.scene_times
            self.background, self.noise, self.calibration = det.background, det.noise, det.calibration

        def forward(self, *args: torch.Tensor) -> object:
            if self.fail:
                raise RuntimeError("injected")
            return self.det(*args)

    faulty, bank = Faulty(), FeatureBank(slicer.window - 1, new=8)
    a, b = (WindowScorer(faulty, slicer, 0.5, torch.device("cpu"), bank=bank) for _ in range(2))
    xa, xb = a.model_input(frames(12, seed=1)), b.model_input(frames(12, seed=2))
    score_together([a, b], [xa[:5], xb[:5]])
    kept = (a.seen, b.seen, a._smooth._ema, b._smooth._ema, a._smooth._recent, b._smooth._recent)
    faulty.fail = True
    with pytest.raises(RuntimeError):
        score_together([a, b], [xa[5:], xb[5:]])
    assert (a.seen, b.seen, a._smooth._ema, b._smooth._ema, a._smooth._recent, b._smooth._recent) == kept
    faulty.fail = False
    rest = score_together([a, b], [xa[5:], xb[5:]])[0].score
    whole = WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(frames(12, seed=1)).score
    np.testing.assert_allclose(rest, whole[5:], rtol=1e-5, atol=1e-6)
