"""Ablation of the score's cues on a labelled set: each cue alone, the learned model alone, all combined.

Takes a model fitted by `stream-detector fit` (its network, scene prior, headings and baselines
stay as fitted), keeps the raw per-cell cues of its held-back calibration blocks, its training
blocks and every test clip, then scores them again under several cue weightings through the
module's own `score_cells`: per setting, the threshold is calibrated again on the held-back blocks
(1 false alarm per hour) and the set is measured as `eval` does: causal and literature-protocol
frame AUC, labelled episodes that raise an event at that threshold (the daemon's default event
settings), false-alarm onsets on normal frames; for a scenario kit (clips named <type>_<n>), the
episodes alarmed per type.

    python benchmarks/ablation.py --model runs/ped2 --data ../shared/data/ucsd_ped2 \\
        --cues runs/ped2-cues.npz [--train DIR]   # train: the footage it was fitted on (DATA/train)

Uses test labels only to compare the settings printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from stream_detector.capture import iter_frames
from stream_detector.config import CameraConfig, DetectorConfig
from stream_detector.detect import EventTracker, Preprocessor, ScoreSmoother, WindowScorer, policy_for
from stream_detector.messages import FrameScore
from stream_detector.model import CUES, load, threshold_for
from stream_detector.offline import (
    Alarm,
    clip_cues,
    fit_tail,
    literature_scores,
    load_footage,
    load_labelled,
    roc_auc,
)
from stream_detector.offline.evaluation import operator_metrics

SETTINGS = [  # (label, {cue: weight}); cues not named weigh 0
    ("motion error alone (the learned model)", {"motion_error": 1.0}),
    ("speed alone", {"speed": 1.0}),
    ("heading alone", {"heading": 1.0}),
    ("occupancy alone", {"occupancy": 1.0}),
    ("dwell alone", {"dwell": 1.0}),
    ("motion error x0.5 + speed (the previous release's cues)", {"motion_error": 0.5, "speed": 1.0}),
    ("all but the learned model", {"speed": 1.0, "dwell": 1.0}),
    ("as fitted (the default weights)", None),
    ("default + heading x0.5", {"heading": 0.5}),
    ("default without occupancy", {"occupancy": 0.0}),
]


def dump(model_dir: Path, data: Path, train: Path, out: Path) -> None:
    """The raw cues of the fit's held-back and training blocks and of every test clip."""
    model = load(model_dir, "cpu")
    cfg = DetectorConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in model.metadata["detector"].items()})
    footage = load_footage([train], cfg)  # the same blocks, split and channels as the fit's
    det, device = model.module, torch.device("cpu")
    arrays = {f"cal{i}": c for i, c in enumerate(clip_cues(det, model.slicer, footage.calibration, cfg, device))}
    arrays.update({f"seen{i}": c for i, c in enumerate(
        clip_cues(det, model.slicer, footage.train, cfg, device, "training blocks"))})
    prep = Preprocessor.for_model(model.metadata)
    for clip in load_labelled(data):
        frames = np.stack([prep(f) for f in iter_frames(clip.path)])
        arrays[f"test_{clip.name}"] = WindowScorer(det, model.slicer, cfg.smoothing, device).push(frames).cell_error
        print("scored", clip.name, flush=True)
    np.savez(out, fps=footage.fps, **arrays)


def replay(name: str, scores: np.ndarray, fps: float, threshold: float) -> list[Alarm]:
    """The events the daemon's tracker (default camera settings) raises on one clip's scores."""
    tracker = EventTracker(name, policy_for(threshold, CameraConfig(source=name)))
    alarms, opened = [], None
    cells = np.zeros((1, 1), np.float32)
    for i, s in enumerate(scores):
        t = i / fps
        for ev in tracker.observe(FrameScore(name, i, t, t, t, float(s), float(s), False, cells, None)):
            if ev.type == "start":
                opened = (int(round(ev.start_stream * fps)), i)
            elif ev.type == "end" and opened is not None:
                alarms.append(Alarm(name, opened[0], opened[1], i))
                opened = None
    if opened is not None:
        alarms.append(Alarm(name, opened[0], opened[1], len(scores) - 1))
    return alarms


def table(model_dir: Path, data: Path, dumped: Path) -> None:
    model = load(model_dir, "cpu")
    det, meta = model.module, model.metadata
    default = det.weights.clone()
    z = np.load(dumped)
    fps, warm = float(z["fps"]), int(meta["window"]) - 1
    cal = [torch.from_numpy(z[k]) for k in z.files if k.startswith("cal")]
    clips = load_labelled(data)
    test = [torch.from_numpy(z[f"test_{c.name}"]) for c in clips]
    names, labels = [c.name for c in clips], [c.labels for c in clips]
    kinds = sorted({n.rsplit("_", 1)[0] for n in names}) if all("_" in n for n in names) else []
    keep = torch.ones_like(det.dwell_mask)
    print(f"{data.name}: model {model_dir.name}, cues {', '.join(CUES)}, default weights "
          f"{[round(float(w), 2) for w in default]}, calibration {sum(len(c) - warm for c in cal)} frames")
    head = "| setting | causal AUC | literature AUC | threshold (1/h) | episodes alarmed | false-alarm onsets |"
    print(head + "".join(f" {k} |" for k in kinds))
    print("|" + " --- |" * (6 + len(kinds)))
    for label, weights in SETTINGS:
        w = default.clone() if weights is None or label.startswith("default") else torch.zeros_like(default)
        for cue, value in (weights or {}).items():
            w[CUES.index(cue)] = value
        det.weights.copy_(w)
        def smoothed(c: torch.Tensor) -> np.ndarray:
            return ScoreSmoother(float(meta["smoothing"]))(det.score_cells(c, keep)[1].numpy())
        score = [smoothed(c) for c in test]
        normal = [smoothed(c)[warm:] for c in cal]
        threshold = threshold_for(fit_tail(normal, fps), 1.0)
        y = np.concatenate(labels)
        alarms = [a for n, s in zip(names, score) for a in replay(n, s, fps, threshold)]
        op = operator_metrics(names, labels, alarms, fps)
        row = (f"| {label} | {roc_auc(np.concatenate(score), y):.4f} | "
               f"{roc_auc(np.concatenate(literature_scores(score)), y):.4f} | {threshold:.2f} | "
               f"{op.alarmed} of {len(op.episodes)} | {len(op.false_alarms)} |")
        for kind in kinds:
            ep = [e for e in op.episodes if e.clip.rsplit("_", 1)[0] == kind]
            fa = [a for a in op.false_alarms if a.clip.rsplit("_", 1)[0] == kind]
            row += f" {sum(e.alarmed for e in ep)}/{len(ep)}" + (f" ({len(fa)} fa)" if fa else "") + " |"
        print(row, flush=True)
    det.weights.copy_(default)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model directory written by fit")
    p.add_argument("--data", type=Path, required=True, help="labelled set: test/, labels.json")
    p.add_argument("--train", type=Path, help="the footage the model was fitted on (default DATA/train)")
    p.add_argument("--cues", type=Path, required=True, help="cue dump (.npz), written when missing")
    args = p.parse_args()
    if not args.cues.exists():
        args.cues.parent.mkdir(parents=True, exist_ok=True)
        dump(args.model, args.data, args.train or args.data / "train", args.cues)
    table(args.model, args.data, args.cues)


if __name__ == "__main__":
    main()
