"""A camera's scorer: the cells its ignore polygons cover, and the rate it is scored at."""

from __future__ import annotations

from pathlib import Path

from conftest import build_detector, export_tiny, tiny_config

from stream_detector.config import CameraConfig
from stream_detector.detect import (
    scoring_rate,
)
from stream_detector.model import runtime


def test_ignore_polygons_map_to_the_cells_whose_centres_they_cover(tiny_model_dir: Path) -> None:
    from stream_detector.detect import ignore_mask

    model = runtime.load(tiny_model_dir, "cpu")  # 64x48 working size, 16 px cells every 8 px
    assert ignore_mask(model, (), 640, 480) is None
    left_half = (((0.0, 0.0), (320.0, 0.0), (320.0, 480.0), (0.0, 480.0)),)
    mask = ignore_mask(model, left_half, 640, 480)
    assert mask is not None and mask.shape == model.slicer.grid
    # cell centres (working px) 8, 16, 24, 32, 40, 48, 56 -> source x 80 .. 560; covered up to 320
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_a_camera_is_scored_at_its_models_rate_unless_it_says_otherwise(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config()
    det, slicer = build_detector(cfg)
    model = runtime.load(export_tiny(det, cfg, slicer, tmp_path / "m"), "cpu")
    fitted = float(model.metadata["fps"])
    assert fitted > 0
    assert scoring_rate(CameraConfig(source="cam.mp4"), model) == fitted
    assert scoring_rate(CameraConfig(source="cam.mp4", fps_limit=0.0), model) == 0.0  # every frame
    assert scoring_rate(CameraConfig(source="cam.mp4", fps_limit=4.0), model) == 4.0
