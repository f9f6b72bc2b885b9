import numpy as np
import torch

from conftest import build_detector, export_tiny, tiny_config
from stream_detector.model import runtime
from stream_detector.preprocess import Preprocessor
from stream_detector.scoring import score_frames


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
