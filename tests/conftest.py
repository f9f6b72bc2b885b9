"""Shared fixtures: real sample video, the shared benchmark data, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stream_detector.config import DetectorConfig
from stream_detector.model.export import export
from stream_detector.model.network import SpacetimeDetector
from stream_detector.model import SpacetimeSlicer
from stream_detector.offline import assemble_detector, build_network

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PED2 = ROOT.parent / "shared" / "data" / "ucsd_ped2"


@pytest.fixture(scope="session")
def vtest() -> Path:
    # Not a skip: ./dev installs opencv-doc, so a missing file means a broken setup.
    assert VTEST.is_file(), f"{VTEST} missing: install Debian's opencv-doc (./dev setup does)"
    return VTEST


def require_shared_data(path: Path, what: str) -> Path:
    """Data that lives beside the repository, not in it: a fresh clone skips the tests that need it,
    with the reason; CI (CI=true) must have it, so there a missing copy fails instead of hiding."""
    if path.exists():
        return path
    message = f"{path} missing: {what} must sit beside the repository (../shared/data)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def ped2() -> Path:
    return require_shared_data(PED2 / "labels.json", "the UCSD Ped2 benchmark data").parent


# Baked into every tiny detector and written into its metadata: the loader checks that they agree.
TINY_CALIBRATION = {"a": 5.0, "beta": 1.0, "floor": 2.0, "fps": 10.0}


def tiny_config(**kw: object) -> DetectorConfig:
    base = dict(width=64, height=48, window=4, cell=16, cell_stride=8, channels=8, temporal_channels=4,
                epochs=1, batch_size=8)
    base.update(kw)
    return DetectorConfig(**base)  # type: ignore[arg-type]


def build_detector(cfg: DetectorConfig) -> tuple[SpacetimeDetector, SpacetimeSlicer]:
    torch.manual_seed(0)
    slicer = SpacetimeSlicer(cfg.width, cfg.height, cfg.window, cfg.cell, cfg.cell_stride)
    det = assemble_detector(build_network(cfg), slicer, cfg)
    det.weights.fill_(1.0)  # every cue counts, so tests see appearance and motion alike
    return det.eval(), slicer


def tiny_metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer) -> dict[str, object]:
    return {
        "working_size": [cfg.width, cfg.height], "window": cfg.window, "cell": cfg.cell,
        "cell_stride": cfg.cell_stride, "grid": list(slicer.grid), "pretext": cfg.pretext, "color": cfg.color, "motion": cfg.motion,
        "smoothing": cfg.smoothing, "top_k": cfg.top_k, "fps": 10.0,
        "calibration": dict(TINY_CALIBRATION),
    }


@pytest.fixture()
def tiny_model_dir(tmp_path: Path) -> Path:
    """An untrained but complete model directory (fast): for loading and checking tests."""
    cfg = tiny_config()
    det, slicer = build_detector(cfg)
    return export_tiny(det, cfg, slicer, tmp_path / "model")


def export_tiny(det: SpacetimeDetector, cfg: DetectorConfig, slicer: SpacetimeSlicer, out: Path) -> Path:
    """Export with the tiny metadata, its calibration baked into the module as `fit` does (the
    loader refuses a module and a metadata.json that disagree)."""
    det.calibration.copy_(torch.tensor([TINY_CALIBRATION[k] for k in ("a", "beta", "floor", "fps")]))
    return export(det, tiny_metadata(cfg, slicer), out)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration, so `-m "not integration"` gives the fast unit run."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
