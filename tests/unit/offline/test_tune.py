"""Tuning with verdicts: a baseline only widens, and only as far as the false alarms need; the
committed model, tuned with one false alarm's clip, no longer alarms on it, and the new directory is
sealed with its lineage while the old one is left as it was; tuned by what fired, only the (cue,
cell) scales the lineage names have changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import injected_clip, stored_false_alarm

from stream_detector.config import DEFAULT_MODEL
from stream_detector.model import CUES, load
from stream_detector.offline import clip_scores, tune, widened
from stream_detector.offline.tune import MARGIN


def test_widened_grows_only_the_cells_the_false_alarms_need() -> None:
    center = np.zeros((1, 2, 2), np.float32)
    scale = np.ones((1, 2, 2), np.float32)
    cues = np.zeros((100, 1, 2, 2), np.float32)
    cues[:, 0, 0, 0] = 5.0  # one cell saw five scales above its center, all along
    cues[:, 0, 1, 1] = 0.5  # another stayed inside its baseline
    wide = widened(center, scale, cues, 0.99, blur=0.0)
    np.testing.assert_allclose(wide[0], [[5.0, 1.0], [1.0, 1.0]])
    assert (widened(center, scale, -cues, 0.99, blur=0.0) == scale).all()  # never narrows


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tuned_model_no_longer_alarms_on_its_false_alarm(tmp_path: Path, vtest: Path) -> None:
    clip = injected_clip(vtest, tmp_path / "fa.avi", 60)
    stored_false_alarm(tmp_path / "events.sqlite", "fa1", "demo", clip)
    parent = sha256_of(DEFAULT_MODEL / "model.pt")
    report = tune(DEFAULT_MODEL, tmp_path, tmp_path / "tuned")
    assert report.events == ["fa1"] and report.frames == 60 - 7 and report.cells_widened > 0
    before, after = load(DEFAULT_MODEL, "cpu"), load(tmp_path / "tuned", "cpu")
    threshold = before.threshold(1.0)
    assert after.threshold(1.0) == threshold  # the calibration is kept: only the baseline widens
    peak_before = clip_scores(before, clip)[1].score.max()
    peak_after = clip_scores(after, clip)[1].score.max()
    assert peak_before > threshold > peak_after, (peak_before, threshold, peak_after)
    lineage = json.loads((tmp_path / "tuned" / "metadata.json").read_text())["lineage"]
    assert lineage["parent_model_sha256"] == parent and lineage["events"] == ["fa1"]
    assert sha256_of(DEFAULT_MODEL / "model.pt") == parent  # the old model stays for rollback
    assert lineage["method"].startswith("per-cell baseline scale widened")  # the default


def test_targeted_tuning_widens_only_what_carried_the_false_alarm(tmp_path: Path,
                                                                    vtest: Path) -> None:
    clip = injected_clip(vtest, tmp_path / "fa.avi", 60)
    stored_false_alarm(tmp_path / "events.sqlite", "fa1", "demo", clip)
    report = tune(DEFAULT_MODEL, tmp_path, tmp_path / "tuned", widen="fired")
    before, after = load(DEFAULT_MODEL, "cpu"), load(tmp_path / "tuned", "cpu")
    threshold = before.threshold(1.0)
    lineage = json.loads((tmp_path / "tuned" / "metadata.json").read_text())["lineage"]
    # The scales the lineage names grew by its factors, every other stayed as it was.
    target = lineage["threshold"]["target"]
    assert target == pytest.approx(MARGIN * threshold)
    old_scale = before.module.scale.numpy()
    new_scale = after.module.scale.numpy()
    named = np.zeros(old_scale.shape, bool)
    for pair in lineage["widened"]:
        k, (y, x) = CUES.index(pair["cue"]), pair["cell"]
        named[k, y, x] = True
        assert new_scale[k, y, x] / old_scale[k, y, x] == pytest.approx(pair["factor"], rel=1e-3)
    assert named.sum() == report.cells_widened > 0
    assert (new_scale[~named] == old_scale[~named]).all()
    unweighted = [k for k, w in enumerate(before.module.weights.tolist()) if w == 0]
    assert unweighted and not named[unweighted].any()  # a cue that does not count cannot cause
    blanket = tune(DEFAULT_MODEL, tmp_path, tmp_path / "blanket", widen="everywhere")
    assert report.cells_widened < blanket.cells_widened
    peaks = lineage["peak_scores"]
    assert peaks[0]["before"] > threshold and peaks[0]["after"] <= target + 1e-3
