"""Self-supervised fitting on normal footage, then the per-cell baseline and the alarm calibration.

The network learns to predict each window's held-out frame from the others. Afterwards its error on
the same normal footage gives each space cell its own baseline (so busy and quiet cells are judged
fairly), and the smoothed frame scores give the alarm-rate calibration.
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
from stream_detector.errors import SourceError
from stream_detector.model.export import export
from stream_detector.model.network import SpacetimeDetector, SpacetimeNet
from stream_detector.model.runtime import threshold_for
from stream_detector.preprocess import Preprocessor
from stream_detector.progress import Progress
from stream_detector.scoring import WindowScorer, context_offsets, ema, frame_scores
from stream_detector.slicer import SpacetimeSlicer

WINDOWS_PER_SEGMENT = 8  # windows cut from one run of consecutive frames: encode once, use T-1 times


@dataclass(frozen=True)
class Clip:
    name: str
    frames: np.ndarray  # (n, C, H, W) float32 preprocessed
    source_size: tuple[int, int]


@dataclass(frozen=True)
class FitReport:
    out_dir: Path
    seconds: float
    final_loss: float
    frames: int
    threshold_1_per_hour: float


def load_clips(sources: Sequence[str | Path],
               cfg: DetectorConfig) -> tuple[list[Clip], tuple[int, int], float]:
    """Decode and preprocess every source; returns clips, working size and frame rate."""
    paths = expand_sources(sources)
    first = video_info(paths[0])
    width, height = cfg.working_size(first.width, first.height)
    prep = Preprocessor(width, height, cfg.color)
    per_clip = max(cfg.window + 1, cfg.max_train_frames // len(paths))
    clips = []
    bar = Progress("decoding", len(paths))
    for i, path in enumerate(paths):
        raw = iter_frames(path, limit=per_clip)
        head = next(raw)  # iter_frames raises SourceError itself when nothing decodes
        frames = [prep(head)] + [prep(f) for f in raw]
        clips.append(Clip(path.stem, np.stack(frames), (head.shape[1], head.shape[0])))
        bar.update(i + 1, path.name)
    return clips, (width, height), first.fps or 25.0


def _segments(clips: list[Clip], length: int, stride: int, rng: random.Random) -> list[tuple[int, int]]:
    """(clip, start) of runs of `length` frames, `stride` apart from a random offset, shuffled."""
    out = []
    for ci, clip in enumerate(clips):
        n = len(clip.frames)
        offset = rng.randrange(0, max(1, min(stride, n - length + 1)))
        out.extend((ci, s) for s in range(offset, n - length + 1, stride))
    rng.shuffle(out)
    return out


def train_network(clips: list[Clip], cfg: DetectorConfig, device: torch.device) -> tuple[SpacetimeNet, float]:
    """Fit the network on windows of normal footage; returns it and the last epoch's mean loss."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    net = SpacetimeNet(cfg.window, cfg.channels, cfg.temporal_channels,
                       residual=cfg.pretext == "predict", in_channels=3 if cfg.color else 1).to(device)
    usable = [c for c in clips if len(c.frames) >= cfg.window]
    if not usable:
        raise SourceError(f"footage too short: every source has fewer than window={cfg.window} frames")
    per_seg = max(1, min(WINDOWS_PER_SEGMENT, min(len(c.frames) for c in usable) - cfg.window + 1))
    length = cfg.window - 1 + per_seg
    tensors = [torch.from_numpy(c.frames) for c in usable]
    seg_batch = max(1, cfg.batch_size // per_seg)
    # Offset 0 gives each clip the most segments; random offsets can only give fewer.
    most_segments = sum(len(range(0, len(c.frames) - length + 1, per_seg)) for c in usable)
    steps_per_epoch = math.ceil(most_segments / seg_batch)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.learning_rate, total_steps=total_steps,
                                                pct_start=0.1)
    ctx_pos, last_pos = context_offsets(cfg.window, cfg.pretext)
    windows = torch.arange(per_seg)[:, None] + torch.arange(cfg.window)[None, :]  # (S, T)
    bar = Progress("training", total_steps)
    loss_mean, step = float("nan"), 0
    net.train()
    for epoch in range(cfg.epochs):
        losses = []
        segs = _segments(usable, length, per_seg, rng)
        for b in range(0, len(segs), seg_batch):
            batch = torch.stack([tensors[ci][s:s + length] for ci, s in segs[b:b + seg_batch]]).to(device)
            loss = _window_loss(net, batch, windows, ctx_pos, last_pos)
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


def _window_loss(net: SpacetimeNet, batch: Tensor, windows: Tensor, ctx_pos: list[int],
                 last_pos: int) -> Tensor:
    """batch (B, L, C, H, W) runs of frames -> mean squared error over every window they hold."""
    b, length, ch, h, w = batch.shape
    feats = net.encode(batch.reshape(b * length, ch, h, w)).reshape(b, length, -1, h // 4, w // 4)
    win = windows.to(batch.device)
    c = net.spatial_channels
    series = feats[:, :, c:][:, win[:, ctx_pos]].flatten(0, 1)  # (B*S, T-1, Ct, h, w)
    spatial = feats[:, :, :c][:, win[:, ctx_pos[-1]]].flatten(0, 1)  # (B*S, C, h, w)
    frames = batch[:, win].flatten(0, 1)  # (B*S, T, C, H, W)
    pred = net.predict(series, spatial, frames[:, last_pos])
    return torch.nn.functional.mse_loss(pred, frames[:, -1])


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


def fit(sources: Sequence[str | Path], out_dir: Path, cfg: DetectorConfig, device: torch.device) -> FitReport:
    """Train, compute the baseline and calibration, export. The one entry point of `fit`."""
    started = time.monotonic()
    clips, (width, height), fps = load_clips(sources, cfg)
    net, final_loss = train_network(clips, cfg, device)
    slicer = SpacetimeSlicer(width, height, cfg.window, cfg.cell, cfg.cell_stride)
    edges = tuple(torch.from_numpy(e) for e in slicer.cell_edges())
    detector = SpacetimeDetector(net, edges, cfg.top_k).to(device).eval()  # type: ignore[arg-type]
    errors = []
    bar = Progress("baseline", len(clips))
    for i, clip in enumerate(clips):
        batch = WindowScorer(detector, slicer, cfg.pretext, cfg.smoothing, device).push(clip.frames)
        errors.append(batch.cell_error)
        bar.update(i + 1, clip.name)
    full = np.concatenate([e[cfg.window - 1:] for e in errors])
    center, scale = cell_baseline(full, cfg.baseline, cfg.scale_floor, cfg.baseline_blur)
    detector.center.copy_(torch.from_numpy(center))
    detector.scale.copy_(torch.from_numpy(scale))
    smoothed = [ema(frame_scores((e - center) / scale, cfg.top_k), cfg.smoothing) for e in errors]
    calibration = fit_tail(smoothed, fps)
    detector.calibration.copy_(torch.tensor([calibration["a"], calibration["beta"],
                                             calibration["floor"], fps]))
    seconds = time.monotonic() - started
    meta = _metadata(cfg, slicer, clips, fps, calibration, final_loss, seconds, device, net)
    export(detector, meta, out_dir)
    return FitReport(out_dir, seconds, final_loss, sum(len(c.frames) for c in clips),
                     threshold_for(calibration, 1.0))


def _metadata(cfg: DetectorConfig, slicer: SpacetimeSlicer, clips: list[Clip], fps: float,
              calibration: dict[str, float], loss: float, seconds: float, device: torch.device,
              net: SpacetimeNet) -> dict[str, Any]:
    frames = sum(len(c.frames) for c in clips)
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
        "smoothing": cfg.smoothing,
        "top_k": cfg.top_k,
        "fps": fps,
        "detector": asdict(cfg),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "sources": [{"name": c.name, "frames": len(c.frames), "source_size": list(c.source_size)}
                        for c in clips],
            "frames": frames,
            "seconds_of_footage": frames / fps,
            "final_loss": loss,
            "fit_seconds": round(seconds, 1),
            "device": str(device),
            "torch": torch.__version__,
        },
        "baseline": {"statistic": cfg.baseline, "scale_floor": cfg.scale_floor, "blur": cfg.baseline_blur},
        "calibration": calibration,
    }
