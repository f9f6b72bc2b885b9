"""Preprocessing: shapes and range, colour models, and frames prepared in the capture thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_detector, export_tiny, tiny_config

from stream_detector.capture import iter_frames
from stream_detector.detect import (
    FramePreparer,
    Preprocessor,
    WindowScorer,
    score_frames,
)
from stream_detector.model import runtime


def test_gray_and_colour_shapes_and_range() -> None:
    img = np.zeros((96, 128, 3), np.uint8)
    img[..., 2] = 255  # pure red in BGR
    gray = Preprocessor(64, 48)(img)
    colour = Preprocessor(64, 48, color=True)(img)
    assert gray.shape == (1, 48, 64) and colour.shape == (3, 48, 64)
    assert colour[2].min() == 1.0 and colour[0].max() == -1.0  # red kept apart from blue
    assert -1.0 <= gray.min() <= gray.max() <= 1.0
    assert Preprocessor(64, 48)(img[..., 0]).shape == (1, 48, 64)  # a gray source


def test_colour_model_exports_loads_and_scores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(color=True)
    det, slicer = build_detector(cfg)
    model = runtime.load(export_tiny(det, cfg, slicer, tmp_path / "m"), "cpu")
    prep = Preprocessor.for_model(model.metadata)
    assert prep.channels == 3
    rng = np.random.default_rng(0)
    frames = np.stack([prep(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(6)])
    batch = score_frames(model.module, model.slicer, 0.5, torch.device("cpu"), frames)
    assert batch.cell_score.shape == (6, *slicer.grid) and np.isfinite(batch.score).all()


@pytest.mark.parametrize("color", [False, True])
def test_frames_prepared_in_capture_score_as_frames_prepared_by_the_scorer(vtest, color: bool) -> None:  # type: ignore[no-untyped-def]
    """The daemon computes preprocessing and motion in the capture thread; fitting and eval let the
    scorer do it. Both must give the model the same input, so the same scores."""
    cfg = tiny_config(color=color, pretext="motion")
    det, slicer = build_detector(cfg)
    meta = {"working_size": [cfg.width, cfg.height], "color": color, "motion": True}
    raw = [f for _, f in zip(range(12), iter_frames(vtest))]
    prepare = FramePreparer.for_detector(meta, det)
    prepared = np.stack([prepare(f) for f in raw])
    plain = np.stack([Preprocessor.for_model(meta)(f) for f in raw])
    flow = slice(plain.shape[1], plain.shape[1] + 2)
    assert prepared.shape[1] == plain.shape[1] + 2 + 2 and np.abs(prepared[1:, flow]).max() > 0
    assert not prepared[0, flow].any()  # the first frame of a connection has no motion
    a = WindowScorer(det, slicer, 0.5, torch.device("cpu"), frames_prepared=True).push(prepared)
    b = WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(plain)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-6)
