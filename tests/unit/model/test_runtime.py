"""Loading a model directory: metadata, checksums, the source's aspect, the calibrated threshold,
the device and half precision.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import frames

from stream_detector.capture import DEMO_VIDEO, iter_frames
from stream_detector.config import DEFAULT_MODEL
from stream_detector.detect import (
    FramePreparer,
    WindowScorer,
    score_frames,
    score_together,
)
from stream_detector.errors import ModelError, SourceError
from stream_detector.model import runtime
from stream_detector.model.export import METADATA_FILE, MODEL_FILE
from stream_detector.model.manifest import sign
from stream_detector.offline.baseline import fit_tail, onset_rate


def test_load_checks_metadata_and_checksum(tiny_model_dir: Path) -> None:
    model = runtime.load(tiny_model_dir, "cpu")
    assert model.slicer.grid == (5, 7)
    meta_path = tiny_model_dir / METADATA_FILE
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "grid": [9, 9]}))
    with pytest.raises(ModelError, match="signature: does not match the metadata"):
        runtime.load(tiny_model_dir, "cpu")  # any edit breaks the seal
    sign(tiny_model_dir)  # re-signed: the module's baseline still disagrees with the JSON
    with pytest.raises(ModelError, match=r"center: baseline shape \(6, 5, 7\) does not match"):
        runtime.load(tiny_model_dir, "cpu")
    meta_path.write_text(json.dumps({**meta, "working_size": [96, 48]}))
    sign(tiny_model_dir)
    with pytest.raises(ModelError, match="does not match"):
        runtime.load(tiny_model_dir, "cpu")
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="format_version 99 is not supported"):
        runtime.load(tiny_model_dir, "cpu")
    meta_path.write_text(json.dumps(meta))
    model_file = tiny_model_dir / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(ModelError, match="checksum does not match"):
        runtime.load(tiny_model_dir, "cpu")


def test_load_missing_and_foreign_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory not found"):
        runtime.load(tmp_path / "nothing")
    with pytest.raises(ModelError, match="no metadata.json"):
        runtime.load(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable metadata"):
        runtime.load(tmp_path)


def test_wrong_aspect_source_is_refused(tiny_model_dir: Path) -> None:
    model = runtime.load(tiny_model_dir, "cpu")
    model.check_source(640, 480, "cam")  # same 4:3 aspect
    with pytest.raises(SourceError, match="does not fit model"):
        model.check_source(1920, 1080, "cam")


def test_calibration_threshold_falls_with_more_allowed_alarms() -> None:
    rng = np.random.default_rng(1)
    scores = [rng.exponential(1.0, 36000)]  # one hour at 10 fps
    cal = fit_tail(scores, fps=10.0)
    lo, hi = runtime.threshold_for(cal, 100.0), runtime.threshold_for(cal, 1.0)
    assert hi > lo
    assert onset_rate(scores, lo, 10.0) == pytest.approx(100.0, rel=0.5)
    short = {**cal, "normal_hours": 0.1}  # too short to see 1 alarm/h: never below the max seen
    assert runtime.threshold_for(short, 1.0) >= cal["floor"]
    with pytest.raises(ValueError):
        runtime.threshold_for(cal, 0)
    assert math.isfinite(hi)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scores_match_cpu(tiny_model_dir: Path) -> None:
    cpu, gpu = runtime.load(tiny_model_dir, "cpu"), runtime.load(tiny_model_dir, "cuda", "fp32")
    x = frames(12)
    a = score_frames(cpu.module, cpu.slicer, 0.5, cpu.device, x)
    b = score_frames(gpu.module, gpu.slicer, 0.5, gpu.device, x)
    np.testing.assert_allclose(a.cell_score, b.cell_score, rtol=1e-3, atol=1e-3)


def demo_model_input(limit: int) -> np.ndarray:
    """The first frames of the demo video as the demo model sees them (with motion)."""
    prepare = FramePreparer.for_model(runtime.load(DEFAULT_MODEL, "cpu"))
    return np.stack([prepare(f) for f in iter_frames(DEMO_VIDEO, limit=limit)])


def assert_close_to_float32(reference: runtime.LoadedModel, other: runtime.LoadedModel, x: np.ndarray) -> None:
    """Scores within 0.01 (the demo threshold is 6.6, normal scores ~0-2), cells within 0.05."""
    def scored(m: runtime.LoadedModel) -> Any:
        return WindowScorer(m.module, m.slicer, m.smoothing, m.device, frames_prepared=True).push(x)
    a, b = scored(reference), scored(other)
    np.testing.assert_allclose(b.score, a.score, atol=0.01)
    np.testing.assert_allclose(b.cell_score, a.cell_score, atol=0.05)


def test_half_precision_scores_match_float32_on_real_frames() -> None:
    """Half precision runs the network only; cues, baselines and scores stay float32. Checked on the
    CPU here (slower there, but the same arithmetic path); on CUDA below whenever a GPU is present."""
    x = demo_model_input(40)
    fp32 = runtime.load(DEFAULT_MODEL, "cpu", "fp32")
    fp16 = runtime.load(DEFAULT_MODEL, "cpu", "fp16")
    assert (fp32.precision, fp16.precision) == ("fp32", "fp16")
    assert runtime.load(DEFAULT_MODEL, "cpu").precision == "fp32"  # auto: fp16 on CUDA only
    assert fp16.module.net.to_time.weight.dtype == torch.float16 and fp16.module.center.dtype == torch.float32
    assert_close_to_float32(fp32, fp16, x)


def test_a_model_exported_without_half_support_refuses_fp16(tiny_model_dir: Path) -> None:
    module = torch.jit.load(str(tiny_model_dir / MODEL_FILE))
    assert module.half_ready
    with pytest.raises(ModelError, match="precision fp16: this model was exported before"):
        runtime.pick_precision("fp16", torch.device("cpu"), object(), tiny_model_dir)
    assert runtime.pick_precision("auto", torch.device("cuda"), object(), tiny_model_dir) == "fp32"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_precision_and_joint_calls_match_cpu_float32() -> None:
    x = demo_model_input(40)
    cpu = runtime.load(DEFAULT_MODEL, "cpu", "fp32")
    gpu = runtime.load(DEFAULT_MODEL, "cuda")
    assert gpu.precision == "fp16"  # auto on CUDA
    assert_close_to_float32(cpu, gpu, x)
    alone = WindowScorer(cpu.module, cpu.slicer, cpu.smoothing, cpu.device,
                         frames_prepared=True).push(x[:20])
    joint = [WindowScorer(gpu.module, gpu.slicer, gpu.smoothing, gpu.device, frames_prepared=True, bank=gpu.bank)
             for _ in range(3)]
    out = score_together(joint, [x[:20], x[20:], x[:20]])  # pinned host memory, one call
    np.testing.assert_allclose(out[0].score, alone.score, atol=0.01)
    np.testing.assert_allclose(out[2].score, out[0].score, atol=1e-6)


def test_auto_device_picks_what_exists() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device("auto").type == want
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            runtime.pick_device("cuda")
