"""Video replayed as the daemon would see it: a file scored causally from its first frame (`score`),
the events the daemon would raise on a labelled clip, through its own FrameScorer and EventTracker,
and the `eval` report built from them (summary.json, roc.png, timelines.png).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_detector.capture import iter_frames, video_info
from stream_detector.config import CameraConfig
from stream_detector.detect import (
    EventTracker,
    FrameScorer,
    Preprocessor,
    ScoreBatch,
    policy_for,
    score_frames,
)
from stream_detector.messages import Frame
from stream_detector.model import LoadedModel, load
from stream_detector.offline.evaluation import (
    Alarm,
    EvalResult,
    OperatorResult,
    check_length,
    load_labelled,
    load_masks,
    operator_metrics,
    roc_curve,
    summarise,
)
from stream_detector.offline.plots import roc_plot, stack_plots, timeline_plot, write_png
from stream_detector.offline.progress import Progress


def clip_scores(model: LoadedModel, source: Path) -> tuple[int, ScoreBatch]:
    """Decode a whole file and score it causally; returns (frames, scores)."""
    info = video_info(source)
    model.check_source(info.width, info.height, str(source))
    prep = Preprocessor.for_model(model.metadata)
    frames = np.stack([prep(f) for f in iter_frames(source)])
    return len(frames), score_frames(model.module, model.slicer, model.smoothing,
                                     model.device, frames)


def score_file(model_dir: Path, source: Path, out: Path, maps: Path | None,
               device: str) -> tuple[int, float]:
    """`score`: one CSV row per frame (frame,score,warmup), and with `maps` the per-cell score maps
    (.npy, frames x rows x cols); returns (frames, max score)."""
    n, batch = clip_scores(load(model_dir, device), source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "score", "warmup"])
        for i, (v, warm) in enumerate(zip(batch.score, batch.warmup)):
            w.writerow([i, f"{v:.6f}", int(warm)])
    if maps:
        np.save(maps, batch.cell_score.astype(np.float32))
    return n, float(batch.score.max())


def replay_alarms(name: str, batch: ScoreBatch, model: LoadedModel, threshold: float,
                  size: tuple[int, int]) -> list[Alarm]:
    """The events the daemon would raise on this clip (default camera settings), as frame ranges:
    the clip's scores become FrameScore verdicts through the daemon's own FrameScorer, and events
    through its EventTracker."""
    scorer = FrameScorer(model, threshold)
    tracker = EventTracker(name, policy_for(threshold, CameraConfig(source=name)))
    fps = float(model.metadata["fps"])
    width, height = size
    image = np.broadcast_to(np.zeros(1, np.uint8), (height, width, 3))  # verdicts need its size only
    frames = [Frame(name, i, i / fps, i / fps, i / fps, image) for i in range(len(batch.score))]
    alarms: list[Alarm] = []
    open_at: tuple[int, int, tuple[int, int, int, int] | None] | None = None
    for i, verdict in enumerate(scorer.verdicts(frames, batch)):
        for ev in tracker.observe(verdict):
            if ev.type == "start":
                b = (ev.box.x0, ev.box.y0, ev.box.x1, ev.box.y1) if ev.box else None
                open_at = (int(round(ev.start_stream * fps)), i, b)
            elif ev.type == "end" and open_at is not None:
                alarms.append(Alarm(name, open_at[0], open_at[1], i, open_at[2]))
                open_at = None
    if open_at is not None:
        alarms.append(Alarm(name, open_at[0], open_at[1], len(batch.score) - 1, open_at[2]))
    return alarms


@dataclass(frozen=True)
class EvalReport:
    """What `eval` found; the files it wrote are in `out`."""

    clips: int
    threshold: float
    result: EvalResult
    operator: OperatorResult
    out: Path


def evaluate(model_dir: Path, data: Path, out: Path, false_alarms_per_hour: float,
             device: str) -> EvalReport:
    """`eval`: every labelled clip scored causally and its alarms replayed at the calibrated
    threshold; AUCs, operator metrics, and summary.json, roc.png and timelines.png under `out`."""
    clips = load_labelled(data)
    model = load(model_dir, device)
    threshold = model.threshold(false_alarms_per_hour)
    fps = float(model.metadata["fps"])
    names, scores, labels, alarms = [], [], [], []
    bar = Progress("evaluating", len(clips))
    for i, clip in enumerate(clips):
        n, batch = clip_scores(model, clip.path)
        check_length(clip, n)
        info = video_info(clip.path)
        names.append(clip.name)
        scores.append(batch.score)
        labels.append(clip.labels)
        alarms.extend(replay_alarms(clip.name, batch, model, threshold, (info.width, info.height)))
        bar.update(i + 1, clip.name)
    result = summarise(names, scores, labels, threshold, fps)
    operator = operator_metrics(names, labels, alarms, fps, load_masks(data))
    fpr, tpr = roc_curve(np.concatenate(scores), np.concatenate(labels))
    write_png(out / "roc.png", roc_plot(fpr, tpr, f"frame-level ROC, causal scores: AUC {result.auc_causal:.3f}"))
    write_png(out / "timelines.png", stack_plots([
        timeline_plot(n, s, y, threshold, [(a.start, a.raised, a.end) for a in alarms if a.clip == n])
        for n, s, y in zip(names, scores, labels)]))
    summary = {"model": str(model_dir), "data": str(data), **result.__dict__,
               "false_alarms_per_hour_target": false_alarms_per_hour,
               "operator": operator.as_dict()}
    summary["per_clip_auc"] = {k: (None if np.isnan(v) else v)  # undefined for all-anomalous clips
                               for k, v in result.per_clip_auc.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return EvalReport(len(clips), threshold, result, operator, out)
