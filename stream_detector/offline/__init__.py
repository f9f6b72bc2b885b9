"""Offline tools, beside the live path and never used by it: fitting a model to a scene's normal
footage, scoring a file, evaluating on labelled video, and measuring speed.

  fit.py         self-supervised fitting, the per-cell baseline, the alarm calibration (`fit`)
  replay.py      video scored and alarms replayed as the daemon would (`score`, `eval`)
  evaluation.py  AUC, ROC, false alarms per hour, episodes alarmed and their delays
  plots.py       the `eval` report's pictures
  bench.py       speed of each stage and of the live path, in one run (`bench`)
  tune.py        a model's baseline widened by the clips of events marked false_alarm (`tune`)
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
from stream_detector.offline.fit import (
    Clip,
    FitReport,
    assemble_detector,
    build_network,
    clip_cues,
    combine,
    cue_baseline,
    fit,
    fit_tail,
    load_footage,
    train_network,
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
    "TuneReport",
    "assemble_detector",
    "bench",
    "build_network",
    "check_length",
    "clip_cues",
    "clip_scores",
    "combine",
    "cue_baseline",
    "evaluate",
    "false_alarm_clips",
    "fit",
    "fit_tail",
    "literature_scores",
    "load_footage",
    "load_labelled",
    "measure_stages",
    "replay_alarms",
    "roc_auc",
    "score_file",
    "train_network",
    "tune",
    "widened",
]
