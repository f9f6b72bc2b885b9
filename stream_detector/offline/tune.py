"""Tuning a model with operators' verdicts: baselines widen so that the clips of events marked
false_alarm would not fire (every cue of every cell, or only what fired); the result is a new sealed
model directory with its lineage in the metadata (the parent stays as it was, for rollback).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stream_detector.capture import video_info
from stream_detector.config import DetectorConfig
from stream_detector.detect import ScoreSmoother, scene_prior_of
from stream_detector.errors import UserError
from stream_detector.model import CUES, METADATA_FILE, MODEL_FILE, load, sign
from stream_detector.offline.fit import clip_cues, frame_score, load_footage
from stream_detector.offline.widen import Baseline, Judged, fitted_factors
from stream_detector.outputs import FILE_NAME, EventStore

QUANTILE = 0.99  # widen="everywhere": the q of a false alarm's cues each cell's baseline must hold
MAX_FRAMES = 20000  # frames of false-alarm clips scored at most (evenly spread over them)
# widen="fired": the false alarms' scores are brought under this share of the threshold the camera
# runs at. It is the daemon's default low threshold (an open event ends under it), so the same
# scene seen again, with its own noise, has room before it reaches the threshold.
MARGIN = 0.8
WIDEN = ("everywhere", "fired")


@dataclass(frozen=True)
class TuneReport:
    out_dir: Path
    events: list[str]
    frames: int
    cells_widened: int  # (cue, cell) pairs whose scale grew
    scale_growth: float  # mean factor by which those scales grew


def false_alarm_clips(store_path: Path, cameras: Sequence[str] = (),
                      events: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(event id, clip) of every event marked false_alarm whose clip is on disk, oldest first;
    only `cameras`' and only `events` when given."""
    path = store_path / FILE_NAME if store_path.is_dir() else store_path
    if not path.is_file():
        raise UserError(f"--store: no event store at {path}")
    store = EventStore(path)
    try:
        found = store.events(verdict="false_alarm", limit=10**6)
    finally:
        store.close()
    out = []
    for e in reversed(found):
        clip = e.get("clip")
        if (not cameras or e["camera"] in cameras) and (not events or str(e["id"]) in events) \
                and e.get("has_clip") and clip and Path(clip).is_file():
            out.append((str(e["id"]), Path(clip)))
    return out


def tune(model_dir: Path, store_path: Path, out_dir: Path, cameras: Sequence[str] = (),
         device: str = "cpu", quantile: float = QUANTILE, events: Sequence[str] = (), *,
         false_alarms_per_hour: float = 1.0, margin: float = MARGIN,
         widen: str = "everywhere") -> TuneReport:
    """Widen `model_dir`'s baseline with the false alarms in the store (only `cameras`' and only
    `events` when given); write `out_dir`.

    widen="everywhere" (the default): every cue of every cell widened to hold the `quantile` of the
    false alarms' cues. widen="fired": only the (cue, cell) pairs that carried a false alarm over
    the threshold the camera runs at (`false_alarms_per_hour`, as in its config), each only until
    the false alarm's scores stay under `margin` x that threshold."""
    if widen not in WIDEN:
        raise ValueError(f"widen must be one of {WIDEN}, not {widen!r}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"--out: {out_dir} exists and is not empty: tuning writes a new directory "
                        f"(the model it starts from stays as it is)")
    clips = false_alarm_clips(store_path, cameras, events)
    if not clips:
        raise UserError(f"--store: {store_path}: no event marked false_alarm has a clip to learn from"
                        + (" among --event" if events else ""))
    model = load(model_dir, device, "fp32")  # saved again as it was: never half precision
    meta = model.metadata
    for _, clip in clips:
        size = _size(clip)
        model.check_source(*size, str(clip))  # a clip of another scene cannot teach this one
    alarms = _judged(model, clips, event_times(store_path, [e for e, _ in clips]))
    threshold = model.threshold(false_alarms_per_hour)
    smoothing = float(meta["smoothing"])
    before = _peaks(model.module, alarms, smoothing)
    scale, wide = widen_baseline(model.module, [a for _, a in alarms], quantile,
                                 float(meta.get("baseline", {}).get("blur", 0.0)),
                                 target=margin * threshold if widen == "fired" else None,
                                 threshold=threshold, smoothing=smoothing)
    after = _peaks(model.module, alarms, smoothing)
    grew = wide > scale * (1 + 1e-6)
    frames = sum(len(a.cues) for _, a in alarms)
    lineage = {
        "parent": str(model_dir), "parent_signature": meta["signature"],
        "parent_model_sha256": meta["files"][MODEL_FILE]["sha256"],
        "tuned": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": _method(widen, quantile, margin),
        "events": [e for e, _ in clips], "frames": int(frames),
        "cells_widened": int(grew.sum()),
        "threshold": {"false_alarms_per_hour": false_alarms_per_hour, "score": threshold,
                      **({"target": margin * threshold} if widen == "fired" else {})},
        "widened": _widened_pairs(scale, wide, grew),
        "peak_scores": [{"clip": name, "before": b, "after": a}  # over the event's frames
                        for (name, _), b, a in zip(alarms, before, after)],
        "previous": meta.get("lineage"),
    }
    _write(model.module, {k: v for k, v in meta.items() if k not in ("files", "signature")},
           lineage, out_dir)
    load(out_dir, "cpu")  # a directory that would not load is no use: say so now
    growth = float((wide[grew] / scale[grew]).mean()) if grew.any() else 1.0
    return TuneReport(out_dir, [e for e, _ in clips], int(frames), int(grew.sum()), growth)


def widen_baseline(module: Any, alarms: list[Judged], quantile: float, blur: float,
                   target: float | None = None, threshold: float = math.inf,
                   smoothing: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The one place tuning reads and writes the model's buffers: `module.scale` widened in place,
    by the factors the regions and cells that carried the false alarms over `threshold` need for
    their scores (smoothed with `smoothing`) to stay under `target` while their events lasted
    (`widen.fitted_factors`), or, with no target, around `module.center` to hold the `quantile` of
    all their cues (`widened`). Returns the scale before and after."""
    center = module.center.detach().cpu().numpy().copy()
    scale = module.scale.detach().cpu().numpy().copy()
    if target is None:
        wide = widened(center, scale, np.concatenate([a.cues for a in alarms]), quantile, blur)
    else:
        wide = (scale * fitted_factors(baseline_of(module), alarms, threshold, target, smoothing)
                ).astype(np.float32)
    with torch.no_grad():
        module.scale.copy_(torch.from_numpy(wide).to(module.scale.device))
    return scale, wide


def baseline_of(module: Any) -> Baseline:
    """The module's buffers a frame score is made of, as numpy."""
    def buffer(name: str) -> np.ndarray:
        return getattr(module, name).detach().cpu().numpy().astype(np.float64)
    return Baseline(buffer("center"), buffer("scale"), buffer("weights"), buffer("static"),
                    int(module.region))


def _method(widen: str, quantile: float, margin: float) -> str:
    if widen == "fired":
        return (f"in each event marked false_alarm, the motion regions and scene cells that carried "
                f"its score over the threshold: the positive terms of each scaled down by one factor "
                f"(their (cue, cell) scales widened, and as far one cell around), as little as keeps "
                f"the score they give the event, smoothed, under {margin:g} x the threshold")
    return (f"per-cell baseline scale widened to hold the q{quantile:g} of the cues of clips of "
            f"events marked false_alarm")


def _widened_pairs(scale: np.ndarray, wide: np.ndarray, grew: np.ndarray) -> list[dict[str, Any]]:
    """Each grown (cue, cell) scale, largest growth first: what tuning changed, for the record."""
    ks, ys, xs = np.nonzero(grew)
    pairs = [{"cue": CUES[k], "cell": [int(y), int(x)], "factor": round(float(wide[k, y, x]
                                                                          / scale[k, y, x]), 3)}
             for k, y, x in zip(ks, ys, xs)]
    return sorted(pairs, key=lambda p: -p["factor"])


def _peaks(module: Any, alarms: list[tuple[str, Judged]], smoothing: float) -> list[float]:
    """Each clip's highest reported score while its event lasted (the module's frame score,
    smoothed as the daemon does)."""
    out = []
    for _, a in alarms:
        during = a.span(ScoreSmoother(smoothing)(frame_score(module, a.cues))) if len(a.cues) else []
        out.append(round(float(np.max(during)), 4) if len(during) else 0.0)
    return out


def event_times(store_path: Path, ids: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """(start, end, clip start) wall times of the events with these ids that have all three."""
    path = store_path / FILE_NAME if store_path.is_dir() else store_path
    store = EventStore(path)
    try:
        found = store.events(ids=tuple(ids), limit=max(1, len(ids)))
    finally:
        store.close()
    return {str(e["id"]): (float(e["start_time"]), float(e["end_time"]), float(e["clip_start"]))
            for e in found if None not in (e.get("start_time"), e.get("end_time"),
                                           e.get("clip_start"))}


def widened(center: np.ndarray, scale: np.ndarray, cues: np.ndarray, quantile: float,
            blur: float) -> np.ndarray:
    """Each (cue, cell) scale grown, where needed, so that the `quantile` of `cues` (n, K, rows,
    cols) lies one scale above the center: scores there stay near 1 instead of alarming. The
    excess is blurred as `fit` blurs its baseline, so neighbouring cells share the evidence."""
    high = np.quantile(cues, quantile, axis=0).astype(np.float32)
    need = np.maximum(high - center, 0.0).astype(np.float32)
    if blur > 0:
        need = np.stack([cv2.GaussianBlur(n, (0, 0), blur, borderType=cv2.BORDER_REPLICATE)
                         for n in need])
    return np.maximum(scale, need).astype(np.float32)


def _size(clip: Path) -> tuple[int, int]:
    cap = cv2.VideoCapture(str(clip))
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise UserError(f"{clip}: not a readable video")
    return w, h


def _judged(model: Any, clips: list[tuple[str, Path]],
            times: dict[str, tuple[float, float, float]]) -> list[tuple[str, Judged]]:
    """(block name, its cues and the event's frames in them) of every clip's blocks, scored as
    the daemon would, through fit's own footage loader and cue scorer (a long clip comes in
    blocks of fit's size, each scored from its start as a stream of its own). Frames before each
    block's first full window are left out; an event with no recorded times spans its clip."""
    meta = model.metadata
    width, height = meta["working_size"]
    window = int(meta["window"])
    cfg = dataclasses.replace(DetectorConfig(), width=width, height=height,
                              color=bool(meta.get("color", False)),
                              motion=bool(meta.get("motion", True)), window=window,
                              scene=bool(meta.get("scene", False)),
                              smoothing=float(meta["smoothing"]), holdout=0.0,
                              max_train_frames=MAX_FRAMES)
    footage = load_footage([str(c) for _, c in clips], cfg, scene_prior_of(model.module))
    per_block = clip_cues(model.module, model.slicer, footage.train, cfg, model.device,
                          "scoring false alarms")
    out = []
    blocks = iter(zip(footage.train, per_block))
    pending = next(blocks, None)
    for event, path in clips:
        fps = video_info(path).fps or float(meta.get("fps") or 25.0)
        start, end, clip_start = times.get(event, (0.0, math.inf, 0.0))
        first, last = (start - clip_start) * fps, min((end - clip_start) * fps, 1e9)
        # load_footage names a block "<stem>[<first frame>:<end>]", in the order of the clips
        while pending is not None and pending[0].name.startswith(f"{path.stem}["):
            block, cues = pending
            offset = int(block.name.rsplit("[", 1)[1].split(":")[0]) + window - 1
            out.append((block.name, Judged(cues[window - 1:], math.floor(first) - offset,
                                           math.ceil(last) - offset)))
            pending = next(blocks, None)
    return out


def _write(module: Any, meta: dict[str, Any], lineage: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (MODEL_FILE + ".tmp")
    module.cpu().save(str(tmp))
    os.replace(tmp, out_dir / MODEL_FILE)
    meta = {**meta, "lineage": lineage}
    tmp_meta = out_dir / (METADATA_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp_meta, out_dir / METADATA_FILE)
    sign(out_dir)
