"""Shared fixtures: real sample video, the shared benchmark data, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stream_detector.config import DetectorConfig
from stream_detector.model.export import export
from stream_detector.model.network import SpacetimeDetector, SpacetimeNet
from stream_detector.slicer import SpacetimeSlicer

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


def tiny_config(**kw: object) -> DetectorConfig:
    base = dict(width=64, height=48, window=4, cell=16, cell_stride=8, channels=8, temporal_channels=4,
                epochs=1, batch_size=8)
    base.update(kw)
    return DetectorConfig(**base)  # type: ignore[arg-type]


def build_detector(cfg: DetectorConfig) -> tuple[SpacetimeDetector, SpacetimeSlicer]:
    torch.manual_seed(0)
    slicer = SpacetimeSlicer(cfg.width, cfg.height, cfg.window, cfg.cell, cfg.cell_stride)
    net = SpacetimeNet(cfg.window, cfg.channels, cfg.temporal_channels, residual=cfg.pretext == "predict",
                       in_channels=3 if cfg.color else 1)
    edges = tuple(torch.from_numpy(e) for e in slicer.cell_edges())
    return SpacetimeDetector(net, edges, cfg.top_k).eval(), slicer  # type: ignore[arg-type]


def tiny_metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer) -> dict[str, object]:
    return {
        "working_size": [cfg.width, cfg.height], "window": cfg.window, "cell": cfg.cell,
        "cell_stride": cfg.cell_stride, "grid": list(slicer.grid), "pretext": cfg.pretext, "color": cfg.color,
        "smoothing": cfg.smoothing, "top_k": cfg.top_k, "fps": 10.0,
        "calibration": {"a": 5.0, "beta": 1.0, "floor": 2.0, "fps": 10.0},
    }


@pytest.fixture()
def tiny_model_dir(tmp_path: Path) -> Path:
    """An untrained but complete model directory (fast): for loading and checking tests."""
    cfg = tiny_config()
    det, slicer = build_detector(cfg)
    return export(det, tiny_metadata(cfg, slicer), tmp_path / "model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration, so `-m "not integration"` gives the fast unit run."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
