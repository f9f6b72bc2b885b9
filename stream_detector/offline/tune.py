"""Tuning a model with operators' verdicts: the clips of events marked false_alarm are scored as more
normal footage, and each cell's baseline widens to hold what they show; the result is a new sealed
model directory with its lineage in the metadata (the parent stays as it was, for rollback).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stream_detector.config import DetectorConfig
from stream_detector.detect import scene_prior_of
from stream_detector.errors import UserError
from stream_detector.model import METADATA_FILE, MODEL_FILE, load, sign
from stream_detector.offline.fit import clip_cues, load_footage
from stream_detector.outputs import FILE_NAME, EventStore

QUANTILE = 0.99  # of a false alarm's cues per cell: what the widened baseline must hold
MAX_FRAMES = 20000  # frames of false-alarm clips scored at most (evenly spread over them)


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
         device: str = "cpu", quantile: float = QUANTILE, events: Sequence[str] = ()) -> TuneReport:
    """Widen `model_dir`'s baseline with the false alarms in the store (only `cameras`' and only
    `events` when given); write `out_dir`."""
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
    cues = _cues(model, [c for _, c in clips])
    scale, wide = widen_baseline(model.module, cues, quantile,
                                 float(meta.get("baseline", {}).get("blur", 0.0)))
    grew = wide > scale * (1 + 1e-6)
    lineage = {
        "parent": str(model_dir), "parent_signature": meta["signature"],
        "parent_model_sha256": meta["files"][MODEL_FILE]["sha256"],
        "tuned": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "method": f"per-cell baseline scale widened to hold the q{quantile:g} of the cues of "
                  f"clips of events marked false_alarm",
        "events": [e for e, _ in clips], "frames": int(len(cues)),
        "cells_widened": int(grew.sum()), "previous": meta.get("lineage"),
    }
    _write(model.module, {k: v for k, v in meta.items() if k not in ("files", "signature")},
           lineage, out_dir)
    load(out_dir, "cpu")  # a directory that would not load is no use: say so now
    growth = float((wide[grew] / scale[grew]).mean()) if grew.any() else 1.0
    return TuneReport(out_dir, [e for e, _ in clips], int(len(cues)), int(grew.sum()), growth)


def widen_baseline(module: Any, cues: np.ndarray, quantile: float,
                   blur: float) -> tuple[np.ndarray, np.ndarray]:
    """The one place tuning reads and writes the model's buffers: `module.scale` widened in place
    (`widened`) around `module.center`, both shaped like one frame's cues. Returns the scale
    before and after."""
    center = module.center.detach().cpu().numpy().copy()
    scale = module.scale.detach().cpu().numpy().copy()
    wide = widened(center, scale, cues, quantile, blur)
    with torch.no_grad():
        module.scale.copy_(torch.from_numpy(wide).to(module.scale.device))
    return scale, wide


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


def _cues(model: Any, clips: list[Path]) -> np.ndarray:
    """Raw per-cell cues (n, K, rows, cols) of every clip's frames past the first window, scored
    as the daemon would, through fit's own footage loader and cue scorer."""
    meta = model.metadata
    width, height = meta["working_size"]
    cfg = dataclasses.replace(DetectorConfig(), width=width, height=height,
                              color=bool(meta.get("color", False)),
                              motion=bool(meta.get("motion", True)), window=int(meta["window"]),
                              scene=bool(meta.get("scene", False)),
                              smoothing=float(meta["smoothing"]), holdout=0.0,
                              max_train_frames=MAX_FRAMES)
    footage = load_footage([str(c) for c in clips], cfg, scene_prior_of(model.module))
    per_clip = clip_cues(model.module, model.slicer, footage.train, cfg, model.device,
                         "scoring false alarms")
    return np.concatenate([c[cfg.window - 1:] for c in per_clip])


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
