"""Ablation of the score's cues on a labelled set: each cue alone, the learned model alone, combined.

Fits the network once (the package's own `fit` steps: same split, same training, same baselines),
keeps the raw per-cell cues of the training blocks, the held-back calibration blocks and every test
clip, then re-scores them under several cue weightings and top-k without retraining. Prints one row per setting: causal
and literature-protocol frame AUC and the threshold calibrated for 1 false alarm/h.

    python benchmarks/ablation.py --data ../shared/data/ucsd_ped2 --cues runs/ped2-cues.npz \
        [--detector '{"pretext": "motion"}']

Uses test labels only to compare the few settings printed; the defaults were chosen from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from stream_detector.capture import iter_frames
from stream_detector.config import DetectorConfig
from stream_detector.detect import MotionField, Preprocessor, ema, frame_scores, with_motion
from stream_detector.model import CUES, SpacetimeSlicer, threshold_for
from stream_detector.offline import (
    Clip,
    assemble_detector,
    clip_cues,
    combine,
    cue_baseline,
    fit_tail,
    literature_scores,
    load_footage,
    load_labelled,
    roc_auc,
    train_network,
)

SETTINGS = [  # (label, cue weights: appearance error, motion error, speed)
    ("appearance error alone", (1.0, 0.0, 0.0)),
    ("motion error alone (learned model)", (0.0, 1.0, 0.0)),
    ("speed alone (per-cell flow statistic)", (0.0, 0.0, 1.0)),
    ("learned model: appearance + motion error", (1.0, 1.0, 0.0)),
    ("all three", (1.0, 1.0, 1.0)),
    ("motion error + speed", (0.0, 1.0, 1.0)),
    ("motion error x0.5 + speed (the default)", (0.0, 0.5, 1.0)),
]


def dump(data: Path, out: Path, cfg: DetectorConfig) -> None:
    footage = load_footage([data / "train"], cfg)
    net, _ = train_network(footage.train, cfg, torch.device("cpu"))
    w, h = footage.working_size
    slicer = SpacetimeSlicer(w, h, cfg.window, cfg.cell, cfg.cell_stride)
    det = assemble_detector(net, slicer, cfg).eval()
    cal = clip_cues(det, slicer, footage.calibration, cfg, torch.device("cpu"))
    seen = clip_cues(det, slicer, footage.train, cfg, torch.device("cpu"), "training blocks")
    prep = Preprocessor(w, h, cfg.color)
    test = {}
    for clip in load_labelled(data):
        frames = np.stack([prep(f) for f in iter_frames(clip.path)])
        if cfg.motion:
            frames = with_motion(frames, MotionField())
        test[clip.name] = clip_cues(det, slicer, [Clip(clip.name, frames, (0, 0))], cfg,
                                           torch.device("cpu"))[0]
    np.savez(out, fps=footage.fps, **{f"cal{i}": c for i, c in enumerate(cal)},
             **{f"seen{i}": c for i, c in enumerate(seen)},
             **{f"test_{k}": v for k, v in test.items()})


def score(cues: np.ndarray, center: np.ndarray, scale: np.ndarray, weights: np.ndarray, top_k: int,
          smoothing: float) -> np.ndarray:
    return ema(frame_scores(combine(cues, center, scale, weights), top_k), smoothing)


def table(data: Path, dumped: Path, cfg: DetectorConfig) -> None:
    z = np.load(dumped)
    fps = float(z["fps"])
    cal = [z[k] for k in z.files if k.startswith("cal")]
    seen = [z[k] for k in z.files if k.startswith("seen")]
    clips = load_labelled(data)
    test = [z[f"test_{c.name}"] for c in clips]
    labels = np.concatenate([c.labels for c in clips])
    full = np.concatenate([c[cfg.window - 1:] for c in cal])
    print(f"{data.name}: cues {', '.join(CUES)}; calibration {len(full)} frames; "
          f"scale_floor {cfg.scale_floor}, blur {cfg.baseline_blur}, smoothing {cfg.smoothing}")
    print("| setting | top_k | causal AUC | literature AUC | threshold (1/h) |")
    print("| --- | --- | --- | --- | --- |")
    if seen:
        center, scale = cue_baseline(full, np.concatenate([c[cfg.window - 1:] for c in seen]), cfg)
    else:  # a dump without training-block cues: every baseline from the held-back blocks
        print("(no training-block cues in this dump: speed's baseline from the held-back blocks too)")
        center, scale = cue_baseline(full, full[:0], cfg)
    for label, weights in SETTINGS:
        w = np.asarray(weights, np.float32)
        if not any(full[:, k].any() for k in np.nonzero(w)[0]):  # e.g. no appearance error: no row
            continue
        for k in sorted({4, cfg.top_k, 16}):
            ours = [score(t, center, scale, w, k, cfg.smoothing) for t in test]
            normal = [score(c, center, scale, w, k, cfg.smoothing) for c in cal]
            causal = roc_auc(np.concatenate(ours), labels)
            lit = roc_auc(np.concatenate(literature_scores(ours)), labels)
            thr = threshold_for(fit_tail(normal, fps), 1.0)
            print(f"| {label} | {k} | {causal:.4f} | {lit:.4f} | {thr:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="labelled set: train/, test/, labels.json")
    p.add_argument("--cues", type=Path, required=True, help="cue dump (.npz), written when missing")
    p.add_argument("--detector", default="{}", help="JSON of [detector] settings over the defaults")
    args = p.parse_args()
    cfg = DetectorConfig(**json.loads(args.detector))
    if not args.cues.exists():
        args.cues.parent.mkdir(parents=True, exist_ok=True)
        dump(args.data, args.cues, cfg)
    table(args.data, args.cues, cfg)


if __name__ == "__main__":
    main()
