"""Shared fixtures and helpers: real sample video and clips cut from it, the shared benchmark data,
tiny models, a config file, stored events, a fresh metrics registry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from stream_detector.config import DetectorConfig
from stream_detector.detect import ScenePrior
from stream_detector.messages import Box, Event, Frame, FrameScore
from stream_detector.model import SpacetimeDetector, SpacetimeSlicer, export
from stream_detector.offline import assemble_detector, build_network
from stream_detector.outputs import EventStore, event_payload

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PED2 = ROOT.parent / "shared" / "data" / "ucsd_ped2"


@pytest.fixture(scope="session")
def vtest() -> Path:
    # Not a skip: ./dev installs opencv-doc, so a missing file means a broken setup.
    assert VTEST.is_file(), f"{VTEST} missing: install Debian's opencv-doc (./dev setup does)"
    return VTEST


@pytest.fixture(scope="session")
def street(vtest: Path) -> list[np.ndarray]:
    """Every frame of vtest.avi (79.5 s at 10 frames/s) at 192x144, the size the scene watch
    measures at: a real street for the tamper and picture tests, 66 MB."""
    import cv2

    cap = cv2.VideoCapture(str(vtest))
    frames = []
    while (got := cap.read())[0]:
        frames.append(cv2.resize(got[1], (192, 144), interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


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
                epochs=1, batch_size=8, learn_seconds=0.5)
    base.update(kw)
    return DetectorConfig(**base)  # type: ignore[arg-type]


def build_detector(cfg: DetectorConfig) -> tuple[SpacetimeDetector, SpacetimeSlicer]:
    torch.manual_seed(0)
    slicer = SpacetimeSlicer(cfg.width, cfg.height, cfg.window, cfg.cell, cfg.cell_stride)
    prior = None
    if cfg.scene:  # a flat gray scene, so the scene channels are exercised too
        prior = ScenePrior(np.full((cfg.height, cfg.width), 128, np.float32),
                           np.full((cfg.height, cfg.width), 3, np.float32), 10.0)
    det = assemble_detector(build_network(cfg), slicer, cfg, prior)
    det.weights.fill_(1.0)  # every cue counts, so tests see appearance and motion alike
    det.heading_weight.fill_(0.5)  # every heading half unusual: the heading cue measures something
    return det.eval(), slicer


def tiny_metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer) -> dict[str, object]:
    return {
        "working_size": [cfg.width, cfg.height], "window": cfg.window, "cell": cfg.cell,
        "cell_stride": cfg.cell_stride, "grid": list(slicer.grid), "pretext": cfg.pretext, "color": cfg.color, "motion": cfg.motion,
        "smoothing": cfg.smoothing, "region": cfg.region, "scene": cfg.scene, "fps": 10.0,
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


# --- clips, a config file, stored events, a registry: shared by several test modules ---------


def cut(vtest: Path, out: Path, seconds: float, width: int, height: int) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vtest), "-t", str(seconds), "-vf",
                    f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-threads", "1", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def injected_clip(src: Path, dst: Path, count: int) -> Path:
    """The first `count` frames of `src` at 480x360, 10 frames/s, a bright disc bouncing from the
    10th: what a false alarm's clip looks like to `tune` (the committed model alarms on it)."""
    import cv2

    from stream_detector.capture import Injection

    cap = cv2.VideoCapture(str(src))
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (480, 360))
    disc = Injection(10, count)
    for i in range(count):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(disc.apply(frame, i), (480, 360), interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return dst


def stored_false_alarm(store_path: Path, event_id: str, camera: str, clip: Path | None,
                       wall: float | None = None) -> None:
    """An ended event of `camera` with `clip`, marked false_alarm by an operator, in the store
    (`wall`: its start; default a minute ago, well inside any retention)."""
    import time

    from stream_detector.outputs import Reviews

    wall = time.time() - 60 if wall is None else wall
    store = EventStore(store_path)
    try:
        for kind, end in (("start", None), ("end", wall + 6.0)):
            ev = Event(event_id, camera, kind, wall, 0.0, end, end, 30.0, 1, None, 2.0)
            store.append(ev, event_payload(ev, None, host="cam-host",
                                           clip=str(clip) if end and clip else None,
                                           clip_start=wall if end and clip else None))
        Reviews(store).set(event_id, "false_alarm", "test")
    finally:
        store.close()


@pytest.fixture(scope="module")
def small(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of vtest at 384x288: the substream."""
    return cut(vtest, tmp_path_factory.mktemp("clips") / "small.mp4", 6, 384, 288)


@pytest.fixture(scope="module")
def second(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of vtest at 384x288: a file that loops quickly."""
    return cut(vtest, tmp_path_factory.mktemp("clips") / "second.mp4", 1, 384, 288)


def write_cfg(tmp: Path, extra: str = "", port: int = 0) -> Path:
    path = tmp / "c.toml"
    path.write_text(f'[cameras.door]\nsource = "demo"\n[storage]\npath = "{tmp}/store"\n'
                    f"[metrics]\nport = {port}\n{extra}")
    return path


def make_event(n: int, camera: str = "door", kind: str = "start", wall: float = 1000.0) -> Event:
    end = wall + 1 if kind == "end" else None
    return Event(f"ev{n}", camera, kind, wall, 10.0 + n, end, None if end is None else 11.0 + n,
                 2.5, 7, Box(1, 2, 30, 40), 2.0)


def append(store: EventStore, n: int, **kw: Any) -> int:
    ev = make_event(n, **kw)
    return store.append(ev, event_payload(ev, None, host="cam-host"))


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class ScriptedScorer:
    """Scores a frame by the value written into it (a fake at the scorer protocol seam)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.resets = 0
        self.scored = 0

    def reset(self) -> None:
        self.resets += 1

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        if self.fail:
            raise RuntimeError("injected scoring fault")
        self.scored += len(frames)
        return [FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time,
                           f.image[0, 0, 0] / 10, f.image[0, 0, 0] / 10, False, np.zeros((2, 2)), None)
                for f in frames]


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 48, 64)).astype(np.float32)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration, so `-m "not integration"` gives the fast unit run."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
