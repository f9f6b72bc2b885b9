"""Self-supervised fitting on normal footage, then the per-cell baseline and the alarm calibration.

The footage is cut into blocks; most train the network, every fourth is held back. The network
learns to predict each window's last frame's motion from the window's appearance (or, with
pretext "predict", the last frame and its motion from the frames before). Its cues on the
held-back blocks, footage it never trained on, give each space cell its own baseline (so busy and
quiet cells are judged fairly) and the smoothed frame scores give the alarm-rate calibration, so
the threshold reflects unseen normal footage as the live stream will be.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stream_detector import __version__
from stream_detector.capture import expand_sources, iter_frames, video_info
from stream_detector.config import DetectorConfig
from stream_detector.detect import (
    SCENE_CHANNELS,
    Preprocessor,
    ScenePrior,
    StreamChannels,
    ScoreSmoother,
    WindowScorer,
    fit_prior,
    to_gray_u8,
)
from stream_detector.errors import SourceError
from stream_detector.model import (
    CUES,
    SpacetimeDetector,
    SpacetimeNet,
    SpacetimeSlicer,
    context_offsets,
    export,
    gather_window,
    threshold_for,
)
from stream_detector.offline.baseline import cue_baselines, fit_tail, heading_weights
from stream_detector.offline.progress import Progress

WINDOWS_PER_SEGMENT = 8  # windows cut from one run of consecutive frames: encode once, use T-1 times
BLOCK_FRAMES = 200  # footage is cut into blocks of this many frames for the calibration split


@dataclass(frozen=True)
class Clip:
    name: str
    frames: np.ndarray  # (n, C, H, W) float32 model input: appearance, then flow and scene channels
    source_size: tuple[int, int]


@dataclass(frozen=True)
class Footage:
    """Normal footage cut in two: blocks the network trains on, blocks it never sees (calibration)."""

    train: list[Clip]
    calibration: list[Clip]
    working_size: tuple[int, int]
    fps: float
    prior: ScenePrior | None = None  # the fitted background, for models with scene channels


@dataclass(frozen=True)
class FitReport:
    out_dir: Path
    seconds: float
    final_loss: float
    frames: int
    threshold_1_per_hour: float


def plan_blocks(counts: Sequence[int], cap: int, holdout: float,
                block: int = BLOCK_FRAMES) -> list[tuple[int, int, int, bool]]:
    """(source, start, end, is_calibration) blocks covering the footage, spread over all of it.

    Every source is cut into blocks (of `block` frames, smaller when `cap` is small); when the
    footage holds more than `cap` frames, evenly spaced blocks are kept, so a long recording is
    sampled from end to end, not its first minutes. A `holdout` share of the kept blocks, spread
    evenly among them, is held back for calibration; footage of one block is split in time instead.
    """
    block = min(block, max(16, cap // 4))
    blocks = [(si, s, min(n, s + block)) for si, n in enumerate(counts) for s in range(0, n, block)]
    total = sum(e - s for _, s, e in blocks)
    if total > cap:
        keep = max(2, int(len(blocks) * cap / total))
        idx = np.unique(np.linspace(0, len(blocks) - 1, keep).round().astype(int))
        blocks = [blocks[i] for i in idx]
    if holdout <= 0:
        return [(si, s, e, False) for si, s, e in blocks]
    if len(blocks) == 1:
        si, s, e = blocks[0]
        cut = s + int(round((e - s) * (1 - holdout)))
        return [(si, s, cut, False), (si, cut, e, True)]
    n = len(blocks)
    held = min(n - 1, max(1, int(round(n * holdout))))
    chosen = {int(round((j + 1) * n / held)) - 1 for j in range(held)}
    return [(si, s, e, i in chosen) for i, (si, s, e) in enumerate(blocks)]


def load_footage(sources: Sequence[str | Path], cfg: DetectorConfig,
                 prior: ScenePrior | None = None) -> Footage:
    """Decode and preprocess every source, split it into train and calibration blocks, learn the
    scene's background from the training blocks (unless a fitted model's `prior` is given: more
    footage for that model), then give every block its motion and scene channels, each block as a
    stream of its own (as the daemon sees a camera from its start)."""
    paths = expand_sources(sources)
    infos = [video_info(p) for p in paths]
    width, height = cfg.working_size(infos[0].width, infos[0].height)
    prep = Preprocessor(width, height, cfg.color)
    fps = infos[0].fps or 25.0
    plan = plan_blocks([max(1, i.frames) for i in infos], cfg.max_train_frames, cfg.holdout)
    blocks: list[tuple[str, np.ndarray, tuple[int, int], bool]] = []
    bar = Progress("decoding", len(paths))
    for si, path in enumerate(paths):
        wanted = [(s, e, cal) for src, s, e, cal in plan if src == si]
        if not wanted:
            continue
        limit = max(e for _, e, _ in wanted)
        keep = np.zeros(limit, bool)
        for s, e, _ in wanted:
            keep[s:e] = True
        # Decode every frame (a stream has no random access) but hold only the planned blocks.
        decoded = {i: prep(f) for i, f in enumerate(iter_frames(path, limit=limit)) if keep[i]}
        for s, e, cal in wanted:
            part = [decoded[i] for i in range(s, e) if i in decoded]
            if len(part) > cfg.window:  # else the container's frame count was optimistic
                blocks.append((f"{path.stem}[{s}:{s + len(part)}]", np.stack(part),
                               (infos[si].width, infos[si].height), cal))
        bar.update(si + 1, path.name)
    if not any(not cal for *_, cal in blocks):
        raise SourceError(f"footage too short: no block of more than window={cfg.window} frames to train on")
    if prior is None and cfg.scene:
        prior = _scene_prior([f for _, f, _, cal in blocks if not cal], fps, cfg)
    train: list[Clip] = []
    calibration: list[Clip] = []
    for name, frames, size, cal in blocks:
        clip = Clip(name, StreamChannels(cfg.motion, prior)(frames), size)
        (calibration if cal else train).append(clip)
    if not calibration:  # e.g. every held-back block was shorter than a window: calibrate on training
        calibration = train
    return Footage(train, calibration, (width, height), fps, prior)


def _scene_prior(blocks: list[np.ndarray], fps: float, cfg: DetectorConfig,
                 sample: int = 400) -> ScenePrior:
    """The scene's background and noise from up to `sample` frames spread over the training blocks."""
    frames = np.concatenate(blocks)
    pick = np.unique(np.linspace(0, len(frames) - 1, min(sample, len(frames))).round().astype(int))
    gray = to_gray_u8(frames[pick])
    return fit_prior(gray, fps, learn_seconds=cfg.learn_seconds, adapt_seconds=cfg.adapt_seconds,
                     still_seconds=cfg.still_seconds)


def _segments(clips: list[Clip], length: int, stride: int, rng: random.Random) -> list[tuple[int, int]]:
    """(clip, start) of runs of `length` frames, `stride` apart from a random offset, shuffled."""
    out = []
    for ci, clip in enumerate(clips):
        n = len(clip.frames)
        offset = rng.randrange(0, max(1, min(stride, n - length + 1)))
        out.extend((ci, s) for s in range(offset, n - length + 1, stride))
    rng.shuffle(out)
    return out


def build_network(cfg: DetectorConfig) -> SpacetimeNet:
    appearance = 3 if cfg.color else 1
    motion = 2 if cfg.motion else 0
    return SpacetimeNet(cfg.window, cfg.channels, cfg.temporal_channels, residual=cfg.pretext == "predict",
                        in_channels=appearance + motion, motion_channels=motion,
                        motion_from_appearance=cfg.pretext == "motion")


def train_network(clips: list[Clip], cfg: DetectorConfig, device: torch.device) -> tuple[SpacetimeNet, float]:
    """Fit the network on windows of normal footage; returns it and the last epoch's mean loss."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    net = build_network(cfg).to(device)
    usable = [c for c in clips if len(c.frames) >= cfg.window]
    if not usable:
        raise SourceError(f"footage too short: every source has fewer than window={cfg.window} frames")
    per_seg = max(1, min(WINDOWS_PER_SEGMENT, min(len(c.frames) for c in usable) - cfg.window + 1))
    length = cfg.window - 1 + per_seg
    # The network sees appearance and flow; the scene channels are for the scene cues only.
    tensors = [torch.from_numpy(np.ascontiguousarray(c.frames[:, :net.in_channels])) for c in usable]
    if device.type == "cuda":  # footage fits on any GPU: no host-to-device copy per step
        tensors = [t.to(device) for t in tensors]
    seg_batch = max(1, cfg.batch_size // per_seg)
    # Offset 0 gives each clip the most segments; random offsets can only give fewer.
    most_segments = sum(len(range(0, len(c.frames) - length + 1, per_seg)) for c in usable)
    steps_per_epoch = math.ceil(most_segments / seg_batch)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.learning_rate, total_steps=total_steps,
                                                pct_start=0.1)
    context, last = context_offsets(cfg.window, cfg.pretext)
    windows = (torch.arange(per_seg)[:, None] + torch.arange(cfg.window)[None, :]).to(device)  # (S, T)
    bar = Progress("training", total_steps)
    loss_mean, step = float("nan"), 0
    net.train()
    for epoch in range(cfg.epochs):
        losses = []
        segs = _segments(usable, length, per_seg, rng)
        for b in range(0, len(segs), seg_batch):
            batch = torch.stack([tensors[ci][s:s + length] for ci, s in segs[b:b + seg_batch]]).to(device)
            loss = _window_loss(net, batch, windows, context, last, cfg.flow_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step + 1 < total_steps:
                sched.step()
            losses.append(loss.item())
            step += 1
            bar.update(step, f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses[-50:]):.5f}")
        loss_mean = float(np.mean(losses)) if losses else float("nan")
    net.eval()
    return net, loss_mean


def _window_loss(net: SpacetimeNet, batch: Tensor, windows: Tensor, context: list[int], last: int,
                 flow_weight: float) -> Tensor:
    """batch (B, L, C, H, W) runs of frames -> the prediction loss over every window they hold.

    Appearance and motion channels are weighed separately: flow has its own units."""
    b, length, ch, h, w = batch.shape
    frames = batch.reshape(b * length, ch, h, w)
    feats = net.encode(frames)
    # Windows of every run, as indices into the flattened runs.
    idx = (torch.arange(b, device=batch.device)[:, None, None] * length + windows[None]).flatten(0, 1)
    series, spatial, base, target = gather_window(frames, feats, idx, context, last, net.spatial_channels)
    pred = net.predict(series, spatial, base)
    target = target[:, net.first_output:]
    shown = ch - net.motion_channels - net.first_output  # appearance channels among the outputs
    loss = torch.zeros((), device=batch.device)
    if shown > 0:
        loss = loss + torch.nn.functional.mse_loss(pred[:, :shown], target[:, :shown])
    if net.motion_channels:
        loss = loss + flow_weight * torch.nn.functional.mse_loss(pred[:, shown:], target[:, shown:])
    return loss


def assemble_detector(net: SpacetimeNet, slicer: SpacetimeSlicer, cfg: DetectorConfig,
                      prior: ScenePrior | None = None) -> SpacetimeDetector:
    """The exported module around a network: the slicer's cells, the region, the pretext's offsets
    and the scene prior. Baselines and calibration start neutral; `fit` fills them in."""
    edges = tuple(torch.from_numpy(e) for e in slicer.cell_edges())
    context, last = context_offsets(cfg.window, cfg.pretext)
    times = (cfg.learn_seconds, cfg.adapt_seconds, cfg.still_seconds)
    detector = SpacetimeDetector(net, edges, cfg.region, context, last,  # type: ignore[arg-type]
                                 SCENE_CHANNELS if prior is not None else 0,
                                 (slicer.height, slicer.width), times)
    if prior is not None:
        detector.background.copy_(torch.from_numpy(prior.background))
        detector.noise.copy_(torch.from_numpy(prior.noise))
        detector.calibration[3] = prior.fps  # the scene's time constants count frames at this rate
    border = cfg.dwell_border
    if border:
        detector.dwell_mask.zero_()
        detector.dwell_mask[border:-border, border:-border] = 1.0
    return detector


def cue_weights(cfg: DetectorConfig) -> np.ndarray:
    """The configured weights, less those of cues the model cannot measure."""
    w = np.asarray(cfg.cue_weights, np.float32)
    if not cfg.motion:
        w[[CUES.index(c) for c in ("motion_error", "speed", "heading")]] = 0.0
    if not cfg.scene:
        w[[CUES.index(c) for c in ("occupancy", "dwell")]] = 0.0
    if not w.sum():
        raise SourceError("cue_weights: every cue this model can measure has weight 0")
    return w


def fit(sources: Sequence[str | Path], out_dir: Path, cfg: DetectorConfig, device: torch.device) -> FitReport:
    """Train on part of the footage, set the baselines and calibration on the rest, export."""
    started = time.monotonic()
    weights = cue_weights(cfg)
    footage = load_footage(sources, cfg)
    net, final_loss = train_network(footage.train, cfg, device)
    width, height = footage.working_size
    slicer = SpacetimeSlicer(width, height, cfg.window, cfg.cell, cfg.cell_stride)
    detector = assemble_detector(net, slicer, cfg, footage.prior).to(device).eval()
    clips = footage.train + ([] if footage.calibration is footage.train else footage.calibration)
    detector.heading_weight.copy_(torch.from_numpy(heading_weights(np.concatenate(
        [window_flows(detector, slicer, c.frames, device) for c in clips]))))
    cues = clip_cues(detector, slicer, footage.calibration, cfg, device)
    seen = [] if footage.calibration is footage.train else clip_cues(
        detector, slicer, footage.train, cfg, device, "baseline (training blocks)")
    def warm(parts: list[np.ndarray]) -> np.ndarray:  # frames whose window holds no padding
        return np.concatenate([c[cfg.window - 1:] for c in parts] or [cues[0][:0]])
    center, scale = cue_baselines(warm(cues), warm(seen), cfg)
    detector.center.copy_(torch.from_numpy(center))
    detector.scale.copy_(torch.from_numpy(scale))
    detector.weights.copy_(torch.from_numpy(weights))
    smoothed = [ScoreSmoother(cfg.smoothing)(frame_score(detector, c))[cfg.window - 1:] for c in cues]
    calibration = fit_tail([s for s in smoothed if len(s)], footage.fps)
    detector.calibration.copy_(torch.tensor([calibration["a"], calibration["beta"],
                                             calibration["floor"], footage.fps]))
    seconds = time.monotonic() - started
    meta = _metadata(cfg, slicer, footage, calibration, final_loss, seconds, device, net, weights)
    export(detector, meta, out_dir)
    frames = sum(len(c.frames) for c in footage.train + footage.calibration)
    return FitReport(out_dir, seconds, final_loss, frames, threshold_for(calibration, 1.0))


@torch.no_grad()
def frame_score(detector: SpacetimeDetector, cell_error: np.ndarray) -> np.ndarray:
    """(n, K, rows, cols) raw cues -> (n,) frame scores, by the module itself."""
    x = torch.from_numpy(cell_error).to(detector.center.device)
    return detector.score_cells(x, torch.ones_like(detector.dwell_mask))[1].cpu().numpy()


@torch.no_grad()
def window_flows(detector: SpacetimeDetector, slicer: SpacetimeSlicer, frames: np.ndarray,
                 device: torch.device) -> np.ndarray:
    """(n, 2, rows, cols) each cell's mean flow over the window ending at each frame."""
    x = torch.from_numpy(frames).to(device)
    windows = torch.tensor([slicer.window_indices(t) for t in range(len(frames))], device=device)
    return torch.cat([detector.window_flow(x, windows[i:i + 256])
                      for i in range(0, len(windows), 256)]).cpu().numpy()


def clip_cues(detector: SpacetimeDetector, slicer: SpacetimeSlicer, clips: list[Clip],
                     cfg: DetectorConfig, device: torch.device,
                     label: str = "calibrating (held-back blocks)") -> list[np.ndarray]:
    """Raw per-cell cues (n, K, rows, cols) of each clip, scored as the live path would."""
    out = []
    bar = Progress(label, len(clips))
    for i, clip in enumerate(clips):
        scorer = WindowScorer(detector, slicer, cfg.smoothing, device, frames_prepared=True)
        out.append(scorer.push(clip.frames).cell_error)
        bar.update(i + 1, clip.name)
    return out


def _metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer, footage: Footage,
              calibration: dict[str, float], loss: float, seconds: float, device: torch.device,
              net: SpacetimeNet, weights: np.ndarray) -> dict[str, Any]:
    def described(clips: list[Clip]) -> list[dict[str, Any]]:
        return [{"name": c.name, "frames": len(c.frames), "source_size": list(c.source_size)} for c in clips]
    frames = sum(len(c.frames) for c in footage.train)
    held = sum(len(c.frames) for c in footage.calibration)
    return {
        "stream_detector_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "working_size": [slicer.width, slicer.height],
        "window": cfg.window,
        "cell": cfg.cell,
        "cell_stride": cfg.cell_stride,
        "grid": list(slicer.grid),
        "pretext": cfg.pretext,
        "color": cfg.color,
        "motion": cfg.motion,
        "scene": cfg.scene,
        "cues": list(CUES),
        "cue_weights": [float(w) for w in weights],
        "smoothing": cfg.smoothing,
        "region": cfg.region,
        "fps": footage.fps,
        "detector": asdict(cfg),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "sources": described(footage.train),
            "frames": frames,
            "seconds_of_footage": frames / footage.fps,
            "final_loss": loss,
            "fit_seconds": round(seconds, 1),
            "device": str(device),
            "torch": torch.__version__,
        },
        "calibration_footage": {
            "sources": described(footage.calibration),
            "frames": held,
            "held_back": footage.calibration is not footage.train,
        },
        "baseline": {"motion_cues": f"median; q{cfg.baseline_quantile:g} of active frames "
                                    f"(occupancy > {cfg.active_share:g}), row prior {cfg.row_prior:g}",
                     "scene_cues": f"median; q0.99, floors occupancy {cfg.occupancy_floor:g}, "
                                   f"dwell {cfg.dwell_floor:g} s",
                     "dwell_border": cfg.dwell_border},
        "calibration": calibration,
    }
