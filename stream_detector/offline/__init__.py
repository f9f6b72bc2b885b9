"""Offline tools, beside the live path and never used by it: fitting a model to a scene's normal
footage, scoring a file, evaluating on labelled video, and measuring speed.

  fit.py         self-supervised fitting: footage, training, the exported detector (`fit`)
  baseline.py    what normal looks like: each cue's per-cell baseline, headings, the alarm calibration
  record.py      normal footage recorded from a live camera, spread over a span (`record`)
  split.py       recorded footage split by a camera's model rules (`fit --split`)
  field.py       fit from a live camera: record, then fit; one model per rule (`fit --camera`)
  replay.py      video scored and alarms replayed as the daemon would (`score`, `eval`)
  evaluation.py  AUC, ROC, false alarms per hour, episodes alarmed and their delays
  plots.py       the `eval` report's pictures
  bench.py       speed of each stage and of the live path, in one run (`bench`)
  tune.py        a model's baseline widened by the clips of events marked false_alarm (`tune`)
  widen.py       which (cue, cell) scales a false alarm needs widened, and how far
  progress.py    progress lines for long work
"""

from stream_detector.offline.bench import BenchResult, bench, measure_stages
from stream_detector.offline.evaluation import (
    Alarm,
    LabelledClip,
    check_length,
    literature_scores,
    load_labelled,
    roc_auc,
)
from stream_detector.offline.baseline import cue_baselines, fit_tail, heading_weights
from stream_detector.offline.field import fit_from_camera, fit_models, split_models
from stream_detector.offline.fit import (
    Clip,
    FitReport,
    assemble_detector,
    build_network,
    clip_cues,
    cue_weights,
    fit,
    frame_score,
    load_footage,
    train_network,
    window_flows,
)
from stream_detector.offline.record import (
    Recording,
    Window,
    plan_windows,
    record,
    recording_rate,
)
from stream_detector.offline.replay import (
    EvalReport,
    clip_scores,
    evaluate,
    replay_alarms,
    score_file,
)
from stream_detector.offline.tune import TuneReport, false_alarm_clips, tune, widened

__all__ = [
    "Alarm",
    "BenchResult",
    "Clip",
    "EvalReport",
    "FitReport",
    "LabelledClip",
    "Recording",
    "TuneReport",
    "Window",
    "assemble_detector",
    "bench",
    "build_network",
    "check_length",
    "clip_cues",
    "clip_scores",
    "cue_baselines",
    "cue_weights",
    "evaluate",
    "false_alarm_clips",
    "fit",
    "fit_from_camera",
    "fit_models",
    "fit_tail",
    "frame_score",
    "heading_weights",
    "literature_scores",
    "load_footage",
    "load_labelled",
    "measure_stages",
    "plan_windows",
    "record",
    "recording_rate",
    "replay_alarms",
    "roc_auc",
    "score_file",
    "split_models",
    "train_network",
    "tune",
    "widened",
    "window_flows",
]
