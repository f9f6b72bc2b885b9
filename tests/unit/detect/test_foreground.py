"""The scene channels on real pixels: what stands still grows a dwell, what passes does not; light,
shake and a thing that leaves (a ghost) are not foreground; every cue is causal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_detector, tiny_config

from stream_detector.capture import iter_frames
from stream_detector.detect import Preprocessor, SceneField, WindowScorer, fit_prior, to_gray_u8
from stream_detector.model import CUES

FPS = 10.0


@pytest.fixture(scope="module")
def street(vtest: Path) -> np.ndarray:
    """200 frames of the demo street at the default working size (192x144), uint8 gray."""
    prep = Preprocessor(192, 144)
    return to_gray_u8(np.stack([prep(f) for f in iter_frames(vtest, limit=200)]))


def prior_of(frames: np.ndarray):  # type: ignore[no-untyped-def]
    return fit_prior(frames[::4], FPS, learn_seconds=2.0)


def person(frames: np.ndarray) -> np.ndarray:
    """A light, person-sized figure (10 x 24 working pixels) with some texture, unlike the lawn."""
    rng = np.random.default_rng(0)
    return np.clip(200 + rng.normal(0, 6, (24, 10)), 0, 255).astype(np.uint8)


def paste(frames: np.ndarray, figure: np.ndarray, y: int, x: int, start: int) -> np.ndarray:
    out = frames.copy()
    h, w = figure.shape
    out[start:, y:y + h, x:x + w] = figure
    return out


def test_a_figure_standing_still_grows_a_dwell_walkers_do_not(street: np.ndarray) -> None:
    field = SceneField(prior_of(street[:100]))
    clip = paste(street[100:200], person(street), 96, 60, start=30)  # on the lawn, 7 s
    out = field(clip)
    fg, dwell = out[:, 0], out[:, 1]
    assert not out[:20].any()  # the first 2 s learn the stream's own background
    assert fg[35:, 98:118, 62:68].mean() > 0.9
    # Still for 1 s, then 6 s of dwell, inside the figure (its 1-pixel rim is eroded away).
    assert dwell[-1, 98:118, 62:68].min() == pytest.approx(7.0 - 1.0, abs=0.2)
    elsewhere = dwell[-1].copy()
    elsewhere[86:130, 50:80] = 0
    assert elsewhere.max() < 4.0  # the street's walkers pass or pause; none stands 7 s


def test_light_shake_and_a_thing_that_leaves_are_not_foreground(street: np.ndarray) -> None:
    prior = prior_of(street[:100])
    clip = street[100:160].astype(np.float32)
    darker = np.clip(clip * 0.7 + 10, 0, 255).astype(np.uint8)  # a cloud, or the camera's exposure
    shaken = np.stack([np.roll(f, (i % 3) - 1, axis=1) for i, f in enumerate(street[100:160])])
    for frames in (darker, shaken):
        fg = SceneField(prior)(frames)[20:, 0]
        assert fg.mean() < 0.04, fg.mean()  # walkers only: a few per cent of the picture
    # A figure stands there while the stream learns its background, then walks off: the ground it
    # uncovers matches the fitted background, so it is not a new object.
    leaves = paste(street[100:160], person(street), 96, 60, start=0)
    leaves[30:, 96:120, 60:70] = street[130:160, 96:120, 60:70]
    out = SceneField(prior)(leaves)
    assert out[40:, 0, 98:118, 62:68].mean() < 0.1 and out[-1, 1, 90:126, 55:75].max() < 1.0


def test_scene_channels_are_causal_and_chunks_continue_the_stream(street: np.ndarray) -> None:
    prior = prior_of(street[:100])
    clip = paste(street[100:160], person(street), 96, 60, start=25)
    whole = SceneField(prior)(clip)
    field = SceneField(prior)
    parts = np.concatenate([field(clip[:33]), field(clip[33:])])
    np.testing.assert_array_equal(parts, whole)
    other = clip.copy()
    other[40:] = street[40:60]  # a different future
    np.testing.assert_array_equal(SceneField(prior)(other)[:40], whole[:40])
    field.reset()
    assert not field(clip[:5]).any()  # learning again


def test_every_cue_of_a_frame_is_causal() -> None:
    """A frame's cues (all six) and score do not change when later frames change."""
    det, slicer = build_detector(tiny_config(pretext="motion"))
    rng = np.random.default_rng(0)
    base = rng.uniform(-0.2, 0.2, (48, 64)).astype(np.float32)
    a = np.repeat(base[None], 30, 0) + rng.normal(0, 0.01, (30, 48, 64)).astype(np.float32)
    a[6:, 16:40, 20:28] = -0.9  # a dark figure arrives and stands
    for t in range(6):
        a[t, 16:40, 4 + 8 * t:12 + 8 * t] = 0.9  # a bright one passes before it
    b = a.copy()
    b[22:] = rng.uniform(-1, 1, (8, 48, 64))  # from frame 22 on, anything
    sa = WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(a)
    sb = WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(b)
    for k, cue in enumerate(CUES):
        np.testing.assert_allclose(sa.cell_error[:22, k], sb.cell_error[:22, k], rtol=1e-5, atol=1e-6,
                                   err_msg=cue)
    np.testing.assert_allclose(sa.score[:22], sb.score[:22], rtol=1e-5)
    assert sa.cell_error[21, CUES.index("dwell")].max() > 0.4  # the scene cues measured something
    assert sa.cell_error[5, CUES.index("heading")].max() > 0
    assert not np.allclose(sa.score[22:], sb.score[22:])
