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

import cv2
import numpy as np
import torch
from torch import Tensor

from stream_detector import __version__
from stream_detector.capture import expand_sources, iter_frames, video_info
from stream_detector.config import DetectorConfig
from stream_detector.detect import (
    MotionField,
    Preprocessor,
    WindowScorer,
    ema,
    frame_scores,
    with_motion,
)
from stream_detector.errors import SourceError
from stream_detector.model import (
    CUES,
    LEARNED,
    SpacetimeDetector,
    SpacetimeNet,
    SpacetimeSlicer,
    context_offsets,
    export,
    gather_window,
    threshold_for,
)
from stream_detector.offline.progress import Progress

WINDOWS_PER_SEGMENT = 8  # windows cut from one run of consecutive frames: encode once, use T-1 times
BLOCK_FRAMES = 200  # footage is cut into blocks of this many frames for the calibration split


@dataclass(frozen=True)
class Clip:
    name: str
    frames: np.ndarray  # (n, C, H, W) float32 preprocessed, flow channels appended when motion is on
    source_size: tuple[int, int]


@dataclass(frozen=True)
class Footage:
    """Normal footage cut in two: blocks the network trains on, blocks it never sees (calibration)."""

    train: list[Clip]
    calibration: list[Clip]
    working_size: tuple[int, int]
    fps: float


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


def load_footage(sources: Sequence[str | Path], cfg: DetectorConfig) -> Footage:
    """Decode, preprocess and add motion to every source, then split it into train and calibration."""
    paths = expand_sources(sources)
    infos = [video_info(p) for p in paths]
    width, height = cfg.working_size(infos[0].width, infos[0].height)
    prep = Preprocessor(width, height, cfg.color)
    plan = plan_blocks([max(1, i.frames) for i in infos], cfg.max_train_frames, cfg.holdout)
    train: list[Clip] = []
    calibration: list[Clip] = []
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
        size = (infos[si].width, infos[si].height)
        for s, e, cal in wanted:
            part = [decoded[i] for i in range(s, e) if i in decoded]
            if len(part) <= cfg.window:  # the container's frame count was optimistic
                continue
            frames = np.stack(part)
            if cfg.motion:
                frames = with_motion(frames, MotionField())
            clip = Clip(f"{path.stem}[{s}:{s + len(part)}]", frames, size)
            (calibration if cal else train).append(clip)
        bar.update(si + 1, path.name)
    if not train:
        raise SourceError(f"footage too short: no block of more than window={cfg.window} frames to train on")
    if not calibration:  # e.g. every held-back block was shorter than a window: calibrate on training
        calibration = train
    return Footage(train, calibration, (width, height), infos[0].fps or 25.0)


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
    tensors = [torch.from_numpy(c.frames) for c in usable]
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


def cell_baseline(errors: np.ndarray, statistic: str, floor: float,
                  blur: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell (center, scale) of normal error. errors: (n, rows, cols).

    The floor keeps rarely-visited cells (few samples, tiny spread) from turning ordinary activity
    into huge scores; the blur lets neighbouring cells share evidence for the same reason.
    """
    if statistic == "mean_std":
        center, scale = errors.mean(0), errors.std(0)
    else:
        center = np.median(errors, 0)
        scale = np.quantile(errors, 0.99, axis=0) - center
    scale = np.maximum(scale, floor * float(np.median(scale)) + 1e-8).astype(np.float32)
    center = center.astype(np.float32)
    if blur > 0:
        center = cv2.GaussianBlur(center, (0, 0), blur, borderType=cv2.BORDER_REPLICATE)
        scale = cv2.GaussianBlur(scale, (0, 0), blur, borderType=cv2.BORDER_REPLICATE)
    return center, scale


def onset_rate(scores: list[np.ndarray], u: float, fps: float) -> float:
    """Alarm onsets per hour above u: upward crossings, a clip starting above u counts once."""
    onsets = sum(int(s[0] > u) + int(np.sum((s[1:] > u) & (s[:-1] <= u))) for s in scores)
    hours = sum(len(s) for s in scores) / fps / 3600.0
    return onsets / hours


def fit_tail(scores: list[np.ndarray], fps: float) -> dict[str, float]:
    """Fit log(onsets per hour above u) = a - u / beta over the upper tail of normal scores."""
    allv = np.concatenate(scores)
    grid = np.unique(np.quantile(allv, np.linspace(0.80, 0.999, 40)))
    pts = [(u, onset_rate(scores, float(u), fps)) for u in grid]
    pts = [(u, r) for u, r in pts if r > 0]
    beta = float(np.std(allv) or 1.0)
    a = math.log(pts[0][1]) + pts[0][0] / beta if pts else 0.0
    if len(pts) >= 3:
        us = np.array([p[0] for p in pts])
        logs = np.log([p[1] for p in pts])
        slope, intercept = np.polyfit(us, logs, 1)
        if slope < 0:
            beta, a = -1.0 / float(slope), float(intercept)
    return {"a": a, "beta": beta, "floor": float(allv.max()), "fps": fps,
            "normal_frames": int(allv.size), "normal_hours": allv.size / fps / 3600.0}


def assemble_detector(net: SpacetimeNet, slicer: SpacetimeSlicer,
                      cfg: DetectorConfig) -> SpacetimeDetector:
    """The exported module around a network: the slicer's cells, top-k and the pretext's offsets.
    Baselines and calibration start neutral; `fit` fills them in."""
    edges = tuple(torch.from_numpy(e) for e in slicer.cell_edges())
    context, last = context_offsets(cfg.window, cfg.pretext)
    return SpacetimeDetector(net, edges, cfg.top_k, context, last)  # type: ignore[arg-type]


def cue_baseline(held_back: np.ndarray, seen: np.ndarray,
                 cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-cue, per-cell (center, scale) from (n, K, rows, cols) cues of normal footage.

    The network's errors are judged on held-back footage only (on its training footage they are
    optimistically low); a measured cue (speed) owes nothing to training, so it uses all footage:
    more samples per cell, which matters for the rarely visited ones.
    """
    pairs = []
    for k, learned in enumerate(LEARNED):
        values = held_back[:, k] if learned else np.concatenate([held_back[:, k], seen[:, k]])
        pairs.append(cell_baseline(values, cfg.baseline, cfg.scale_floor, cfg.baseline_blur))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def combine(cues: np.ndarray, center: np.ndarray, scale: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, K, rows, cols) raw cues -> (n, rows, cols) cell scores, as the exported module does."""
    return np.einsum("nkrc,k->nrc", (cues - center) / scale, weights)


def fit(sources: Sequence[str | Path], out_dir: Path, cfg: DetectorConfig, device: torch.device) -> FitReport:
    """Train on part of the footage, set the baseline and calibration on the rest, export."""
    started = time.monotonic()
    footage = load_footage(sources, cfg)
    net, final_loss = train_network(footage.train, cfg, device)
    width, height = footage.working_size
    slicer = SpacetimeSlicer(width, height, cfg.window, cfg.cell, cfg.cell_stride)
    detector = assemble_detector(net, slicer, cfg).to(device).eval()
    weights = np.asarray(cfg.cue_weights if cfg.motion else (1.0, 0.0, 0.0), np.float32)
    cues = clip_cues(detector, slicer, footage.calibration, cfg, device)
    seen = [] if footage.calibration is footage.train else clip_cues(
        detector, slicer, footage.train, cfg, device, "baseline (training blocks)")
    def warm(parts: list[np.ndarray]) -> np.ndarray:  # frames whose window holds no padding
        return np.concatenate([c[cfg.window - 1:] for c in parts] or [cues[0][:0]])
    center, scale = cue_baseline(warm(cues), warm(seen), cfg)
    detector.center.copy_(torch.from_numpy(center))
    detector.scale.copy_(torch.from_numpy(scale))
    detector.weights.copy_(torch.from_numpy(weights))
    smoothed = [ema(frame_scores(combine(c, center, scale, weights), cfg.top_k), cfg.smoothing)
                for c in cues]
    calibration = fit_tail(smoothed, footage.fps)
    detector.calibration.copy_(torch.tensor([calibration["a"], calibration["beta"],
                                             calibration["floor"], footage.fps]))
    seconds = time.monotonic() - started
    meta = _metadata(cfg, slicer, footage, calibration, final_loss, seconds, device, net)
    export(detector, meta, out_dir)
    frames = sum(len(c.frames) for c in footage.train + footage.calibration)
    return FitReport(out_dir, seconds, final_loss, frames, threshold_for(calibration, 1.0))


def clip_cues(detector: SpacetimeDetector, slicer: SpacetimeSlicer, clips: list[Clip],
                     cfg: DetectorConfig, device: torch.device,
                     label: str = "calibrating (held-back blocks)") -> list[np.ndarray]:
    """Raw per-cell cues (n, K, rows, cols) of each clip, scored as the live path would."""
    out = []
    bar = Progress(label, len(clips))
    for i, clip in enumerate(clips):
        scorer = WindowScorer(detector, slicer, cfg.smoothing, device, frames_carry_motion=True)
        out.append(scorer.push(clip.frames).cell_error)
        bar.update(i + 1, clip.name)
    return out


def _metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer, footage: Footage,
              calibration: dict[str, float], loss: float, seconds: float, device: torch.device,
              net: SpacetimeNet) -> dict[str, Any]:
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
        "cues": list(CUES),
        "cue_weights": [float(w) for w in (cfg.cue_weights if cfg.motion else (1.0, 0.0, 0.0))],
        "smoothing": cfg.smoothing,
        "top_k": cfg.top_k,
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
        "baseline": {"statistic": cfg.baseline, "scale_floor": cfg.scale_floor, "blur": cfg.baseline_blur},
        "calibration": calibration,
    }
