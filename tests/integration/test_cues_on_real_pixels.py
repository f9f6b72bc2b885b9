"""Each cue raises its own kind of anomaly over a normal background, and more ordinary walkers do
not raise a normal frame: the committed demo model on the demo street (real pixels of vtest.avi),
with a pedestrian cut from the footage and put where the street never showed one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_detector.capture import iter_frames
from stream_detector.config import DEFAULT_MODEL
from stream_detector.detect import FramePreparer, WindowScorer
from stream_detector.model import CUES, LoadedModel, load

# A pedestrian in frame 753 of vtest.avi (768x576): x, y, width, height.
PEDESTRIAN = (648, 212, 41, 107)


@pytest.fixture(scope="module")
def street(vtest: Path) -> np.ndarray:
    return np.stack(list(iter_frames(vtest)))


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load(DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="module")
def cutout(street: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pedestrian's pixels and a mask of them (unlike the street's median there)."""
    x, y, w, h = PEDESTRIAN
    background = np.median(street[::8, y:y + h, x:x + w], 0)
    crop = street[753, y:y + h, x:x + w]
    mask = np.abs(crop.astype(np.float32) - background).max(2) > 30
    return crop, mask


def put(frame: np.ndarray, cutout: tuple[np.ndarray, np.ndarray], x: int, y: int,
        turned: bool = False) -> np.ndarray:
    crop, mask = cutout
    if turned:  # lying on the ground
        crop, mask = np.rot90(crop).copy(), np.rot90(mask).copy()
    out = frame.copy()
    h, w = mask.shape
    region = out[y:y + h, x:x + w]
    region[mask] = crop[mask]
    return out


def z_scores(model: LoadedModel, frames: list[np.ndarray]) -> np.ndarray:
    """(n, K, rows, cols) every cue's z against the model's per-cell baseline, as the daemon scores."""
    prepare = FramePreparer.for_model(model)
    x = np.stack([prepare(f) for f in frames])
    batch = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                         frames_prepared=True).push(x)
    center, scale = model.module.center.numpy(), model.module.scale.numpy()
    return (batch.cell_error - center) / scale


def cells_of(model: LoadedModel, x: int, y: int, w: int, h: int) -> tuple[slice, slice]:
    """The grid cells that cover a source-pixel box (768x576 -> 192x144, cells every 8 px)."""
    s = 192 / 768
    return slice(int(y * s) // 8, int((y + h) * s) // 8 + 1), slice(int(x * s) // 8, int((x + w) * s) // 8 + 1)


def raised(model: LoadedModel, base: list[np.ndarray], changed: list[np.ndarray], cue: str,
           box: tuple[int, int, int, int], frames: slice) -> float:
    """How much the scenario raised a cue's z in its box over the same frames without it."""
    k = CUES.index(cue)
    rows, cols = cells_of(model, *box)
    before = z_scores(model, base)[frames, k, rows, cols].max()
    after = z_scores(model, changed)[frames, k, rows, cols].max()
    return float(after - before)


def test_someone_standing_where_nobody_stands_raises_dwell_and_occupancy(street, model, cutout) -> None:  # type: ignore[no-untyped-def]
    base = list(street[300:420])  # 12 s of the street
    box = (540, 440, PEDESTRIAN[2], PEDESTRIAN[3])  # on the road in the foreground: nobody goes there
    changed = [put(f, cutout, 540, 440) if i >= 40 else f for i, f in enumerate(base)]
    assert raised(model, base, changed, "dwell", box, slice(100, 120)) > 2.0  # ~6 s still
    assert raised(model, base, changed, "occupancy", box, slice(60, 120)) > 1.0


def test_someone_lying_on_the_path_raises_dwell(street, model, cutout) -> None:  # type: ignore[no-untyped-def]
    base = list(street[300:420])
    w, h = PEDESTRIAN[3], PEDESTRIAN[2]
    box = (420, 330, w, h)  # across the path walkers take
    changed = [put(f, cutout, 420, 330, turned=True) if i >= 40 else f for i, f in enumerate(base)]
    assert raised(model, base, changed, "dwell", box, slice(100, 120)) > 1.0


def test_a_fast_mover_raises_speed_and_the_learned_motion_error(street, model, cutout) -> None:  # type: ignore[no-untyped-def]
    base = list(street[300:340])
    changed = [put(f, cutout, 60 + 40 * (i - 10), 300) if 10 <= i < 25 else f for i, f in enumerate(base)]
    box = (60, 300, 40 * 15, PEDESTRIAN[3])  # 40 px a frame: four times a walker's pace
    assert raised(model, base, changed, "speed", box, slice(11, 25)) > 2.0
    assert raised(model, base, changed, "motion_error", box, slice(11, 25)) > 1.0


def test_a_walker_heading_where_nobody_heads_raises_heading(street, model, cutout) -> None:  # type: ignore[no-untyped-def]
    """Up the lawn towards the street, at a brisk walker's pace: nobody on the lawn goes that way."""
    base = list(street[300:360])
    changed = [put(f, cutout, 250, 460 - 12 * (i - 10)) if 10 <= i < 40 else f for i, f in enumerate(base)]
    box = (250, 460 - 12 * 30, PEDESTRIAN[2], 12 * 30 + PEDESTRIAN[3])
    assert raised(model, base, changed, "heading", box, slice(15, 40)) > 1.0


def test_more_ordinary_walkers_do_not_raise_a_normal_frame_past_the_threshold(street, model) -> None:  # type: ignore[no-untyped-def]
    """The street with its walkers of 4 s later added (their pixels where they differ from the
    street's median): twice the crowd, on the paths people take. Scored as the daemon scores."""
    background = np.median(street[::8], 0)
    base = street[400:560]
    crowd = []
    for i, f in enumerate(base):
        later = street[400 + (i + 40) % 160]
        walkers = np.abs(later.astype(np.float32) - background).max(2) > 30
        out = f.copy()
        out[walkers] = later[walkers]
        crowd.append(out)
    prepare = FramePreparer.for_model(model)
    x = np.stack([prepare(f) for f in crowd])
    scores = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                          frames_prepared=True).push(x).score[model.slicer.window:]
    assert scores.max() < model.threshold(1.0), (scores.max(), model.threshold(1.0))
