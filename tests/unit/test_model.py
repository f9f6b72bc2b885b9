"""The network, its TorchScript export, causality of scoring, baseline statistics and calibration."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import build_detector, tiny_config
from stream_detector.model import FeatureBank
from stream_detector.capture import DEMO_VIDEO, iter_frames
from stream_detector.config import DEFAULT_MODEL
from stream_detector.errors import ModelError, SourceError
from stream_detector.model import runtime
from stream_detector.model.export import MODEL_FILE, METADATA_FILE
from stream_detector.model.manifest import sign
from stream_detector.detect import (
    FramePreparer,
    WindowScorer,
    ema,
    frame_scores,
    score_frames,
    score_together,
)
from stream_detector.offline.fit import cell_baseline, fit_tail, onset_rate


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 48, 64)).astype(np.float32)


def test_cell_errors_match_brute_force_means() -> None:
    det, slicer = build_detector(tiny_config(width=70, height=48))
    err = torch.rand(2, 48, 70)
    cells = det.cell_means(err)
    y0, y1, x0, x1 = slicer.cell_edges()
    for r in range(slicer.grid[0]):
        for c in range(slicer.grid[1]):
            want = err[1, y0[r]:y1[r], x0[c]:x1[c]].mean()
            assert float(cells[1, r, c]) == pytest.approx(float(want), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("pretext", ["predict", "reconstruct", "motion"])
def test_scores_are_causal(pretext: str) -> None:
    det, slicer = build_detector(tiny_config(pretext=pretext))
    a, b = frames(20, seed=1), frames(20, seed=2)
    b[:12] = a[:12]  # same past, different future from frame 12 on
    sa = score_frames(det, slicer, 0.5, torch.device("cpu"), a)
    sb = score_frames(det, slicer, 0.5, torch.device("cpu"), b)
    np.testing.assert_allclose(sa.score[:12], sb.score[:12], rtol=1e-5)
    assert not np.allclose(sa.score[12:], sb.score[12:])


def test_chunked_streaming_equals_whole_clip() -> None:
    det, slicer = build_detector(tiny_config())
    x = frames(25)
    whole = score_frames(det, slicer, 0.5, torch.device("cpu"), x)
    live = WindowScorer(det, slicer, 0.5, torch.device("cpu"), chunk=4)
    parts = [live.push(x[i:i + 3]) for i in range(0, 25, 3)]
    np.testing.assert_allclose(np.concatenate([p.score for p in parts]), whole.score, rtol=1e-5, atol=1e-6)
    assert whole.warmup.tolist() == [True] * 3 + [False] * 22


def test_ignored_cells_never_count() -> None:
    det, slicer = build_detector(tiny_config())
    x = frames(10)
    x[6:, 8:24, 8:24] = 1.0  # a sudden bright block in cell (1, 1) and its neighbours
    plain = score_frames(det, slicer, 1.0, torch.device("cpu"), x)
    ignore = np.zeros(slicer.grid, bool)
    ignore[:3, :3] = True
    masked = WindowScorer(det, slicer, 1.0, torch.device("cpu"), top_k=det.top_k,
                          ignore=ignore).push(x)
    assert masked.score[6] < plain.score[6] and (masked.score <= plain.score + 1e-6).all()
    assert np.isneginf(masked.cell_score[:, :3, :3]).all()


@pytest.mark.parametrize("pretext", ["predict", "motion"])
def test_torchscript_round_trip_matches_eager(tmp_path: Path, pretext: str) -> None:
    det, slicer = build_detector(tiny_config(pretext=pretext))
    scripted = torch.jit.script(det)
    gray = frames(6)
    motion = np.random.default_rng(3).normal(0, 1, (6, 2, 48, 64)).astype(np.float32)
    x = torch.from_numpy(np.concatenate([gray[:, None], motion], 1))
    feats = det.encode(x)
    args = (x, feats, torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5]]))
    eager = det(*args)
    assert eager.cell_error.shape == (2, 3, *slicer.grid)
    torch.testing.assert_close(scripted(*args).cell_score, eager.cell_score)
    path = tmp_path / "m.pt"
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded.encode(x), feats)
    torch.testing.assert_close(loaded(*args).frame_score, eager.frame_score)


def test_load_checks_metadata_and_checksum(tiny_model_dir: Path) -> None:
    model = runtime.load(tiny_model_dir, "cpu")
    assert model.slicer.grid == (5, 7)
    meta_path = tiny_model_dir / METADATA_FILE
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "grid": [9, 9]}))
    with pytest.raises(ModelError, match="signature: does not match the metadata"):
        runtime.load(tiny_model_dir, "cpu")  # any edit breaks the seal
    sign(tiny_model_dir)  # re-signed: the module's baseline still disagrees with the JSON
    with pytest.raises(ModelError, match=r"center: baseline shape \(3, 5, 7\) does not match"):
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


def test_baseline_statistics_per_cell() -> None:
    rng = np.random.default_rng(0)
    errors = np.stack([rng.normal(1.0, 0.1, 5000), rng.normal(5.0, 2.0, 5000)], 1).reshape(5000, 1, 2)
    center, scale = cell_baseline(errors, "mean_std", floor=0.0)
    np.testing.assert_allclose(center[0], [1.0, 5.0], atol=0.1)
    np.testing.assert_allclose(scale[0], [0.1, 2.0], rtol=0.1)
    _, floored = cell_baseline(errors, "mean_std", floor=1.0)  # at least the median scale (1.05)
    assert floored[0, 0] == pytest.approx(np.median(scale), rel=1e-3)
    med, q = cell_baseline(errors, "quantile", floor=0.0)
    assert med[0, 1] == pytest.approx(5.0, abs=0.1) and q[0, 1] == pytest.approx(2.0 * 2.326, rel=0.1)


def test_frame_scores_topk_and_causal_ema() -> None:
    cells = np.array([[[1.0, 9.0], [3.0, 5.0]]])
    assert frame_scores(cells, 1)[0] == 9.0 and frame_scores(cells, 2)[0] == 7.0
    np.testing.assert_allclose(ema(np.array([0.0, 10.0, 10.0]), 0.5), [0.0, 5.0, 7.5])


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
    meta = runtime.read_metadata(DEFAULT_MODEL)
    prepare = FramePreparer.for_model(meta)
    return np.stack([prepare(f) for f in iter_frames(DEMO_VIDEO, limit=limit)])


def assert_close_to_float32(reference: runtime.LoadedModel, other: runtime.LoadedModel, x: np.ndarray) -> None:
    """Scores within 0.01 (the demo threshold is 6.6, normal scores ~0-2), cells within 0.05."""
    def scored(m: runtime.LoadedModel) -> Any:
        return WindowScorer(m.module, m.slicer, m.smoothing, m.device, top_k=16,
                            frames_carry_motion=True).push(x)
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
    alone = WindowScorer(cpu.module, cpu.slicer, cpu.smoothing, cpu.device, top_k=16,
                         frames_carry_motion=True).push(x[:20])
    joint = [WindowScorer(gpu.module, gpu.slicer, gpu.smoothing, gpu.device, top_k=16, bank=gpu.bank)
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


def test_random_segment_offsets_never_exceed_the_planned_steps() -> None:
    """The LR schedule is sized from offset-0 segment counts; a random offset must not add steps."""
    import random

    from stream_detector.offline.fit import Clip, _segments

    clips = [Clip("c", np.zeros((n, 1, 8, 8), np.float32), (8, 8)) for n in (120, 150, 17, 33, 90)]
    for length, stride in ((15, 8), (19, 8), (11, 4)):
        most = sum(len(range(0, len(c.frames) - length + 1, stride)) for c in clips)
        assert max(len(_segments(clips, length, stride, random.Random(i))) for i in range(100)) <= most


def test_ignore_polygons_map_to_the_cells_whose_centres_they_cover(tiny_model_dir: Path) -> None:
    from stream_detector.detect import ignore_mask

    model = runtime.load(tiny_model_dir, "cpu")  # 64x48 working size, 16 px cells every 8 px
    assert ignore_mask(model, (), 640, 480) is None
    left_half = (((0.0, 0.0), (320.0, 0.0), (320.0, 480.0), (0.0, 480.0)),)
    mask = ignore_mask(model, left_half, 640, 480)
    assert mask is not None and mask.shape == model.slicer.grid
    # cell centres (working px) 8, 16, 24, 32, 40, 48, 56 -> source x 80 .. 560; covered up to 320
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_calibration_blocks_are_held_back_and_spread_over_the_footage() -> None:
    from stream_detector.offline.fit import plan_blocks

    plan = plan_blocks([180] * 16, cap=6000, holdout=0.25)  # sixteen short clips, as in UCSD Ped2
    held = [i for i, p in enumerate(plan) if p[3]]
    assert held == [3, 7, 11, 15]
    long = plan_blocks([36000], cap=6000, holdout=0.25)  # one hour-long recording, capped
    assert sum(e - s for _, s, e, _ in long) <= 6000
    assert long[-1][2] > 30000  # the end of the recording is sampled too, not only its start
    cal = [p for p in long if p[3]]
    assert 0 < len(cal) < len(long) and cal[0][1] < 18000 < cal[-1][1]
    one = plan_blocks([100], cap=6000, holdout=0.25)  # a single short clip is split in time
    assert one == [(0, 0, 75, False), (0, 75, 100, True)]
    assert not any(p[3] for p in plan_blocks([180] * 4, cap=6000, holdout=0.0))


def test_streams_scored_together_equal_each_scored_alone() -> None:
    det, slicer = build_detector(tiny_config(pretext="motion"))
    clips = [frames(14, seed=s) for s in (3, 4, 5)]
    alone = [WindowScorer(det, slicer, 0.5, torch.device("cpu"), top_k=det.top_k).push(c) for c in clips]
    bank = FeatureBank(slicer.window - 1, new=8)
    joint = [WindowScorer(det, slicer, 0.5, torch.device("cpu"), top_k=det.top_k, bank=bank) for _ in clips]
    inputs = [s.model_input(c) for s, c in zip(joint, clips)]
    # Uneven steps per stream, and a stream that joins late: each keeps its own history.
    steps = [(0, 3, 2), (3, 4, 0), (4, 9, 6), (9, 14, 14)]
    got: list[list[np.ndarray]] = [[], [], []]
    start = [0, 0, 0]
    for _, end_a, end_c in steps:
        ends = [end_a, end_a, end_c]
        members = [i for i in range(3) if ends[i] > start[i]]
        out = score_together([joint[i] for i in members], [inputs[i][start[i]:ends[i]] for i in members])
        for i, b in zip(members, out):
            got[i].append(b.score)
            start[i] = ends[i]
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), alone[i].score, rtol=1e-5, atol=1e-6)


def test_a_failed_joint_call_leaves_every_stream_unchanged() -> None:
    det, slicer = build_detector(tiny_config(pretext="motion"))

    class Faulty(torch.nn.Module):  # the real detector, whose forward fails when told to
        def __init__(self) -> None:
            super().__init__()
            self.det, self.fail = det, False
            self.encode, self.motion_channels = det.encode, det.motion_channels

        def forward(self, *args: torch.Tensor) -> object:
            if self.fail:
                raise RuntimeError("injected")
            return self.det(*args)

    faulty, bank = Faulty(), FeatureBank(slicer.window - 1, new=8)
    a, b = (WindowScorer(faulty, slicer, 0.5, torch.device("cpu"), bank=bank) for _ in range(2))
    xa, xb = a.model_input(frames(12, seed=1)), b.model_input(frames(12, seed=2))
    score_together([a, b], [xa[:5], xb[:5]])
    kept = (a.seen, b.seen, a._ema, b._ema)
    faulty.fail = True
    with pytest.raises(RuntimeError):
        score_together([a, b], [xa[5:], xb[5:]])
    assert (a.seen, b.seen, a._ema, b._ema) == kept
    faulty.fail = False
    rest = score_together([a, b], [xa[5:], xb[5:]])[0].score
    whole = WindowScorer(det, slicer, 0.5, torch.device("cpu")).push(frames(12, seed=1)).score
    np.testing.assert_allclose(rest, whole[5:], rtol=1e-5, atol=1e-6)
