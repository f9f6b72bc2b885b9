"""Detect: frames -> scores -> events. The inference worker, one thread for every camera, scores the
frames each camera's capture thread prepared, several cameras of one model in one call, and turns
the scores into start/update/end events; it does no disk or network I/O.

  preprocess.py    grayscale, working resolution, [-1, 1]; a frame's model input (with its
                   stream's channels: motion, scene)
  motion.py        dense optical flow (DIS) between consecutive frames: the motion channels
  foreground.py    the stream's own background: foreground and dwell, the scene channels
  scoring.py       WindowScorer: windows -> per-cell scores against the baseline -> frame scores
  frame_scorer.py  FrameScorer: one camera's frames -> FrameScore messages; its lane, its rate
  events.py        EventTracker: scores -> start/update/end with hysteresis
  inference.py     InferenceWorker, the inference thread
  scene.py         what a frame shows, measured cheaply: layout, light, focus, grey or colour
  tamper.py        TamperDetector: the scene learned live; covered, turned, blurred, darker
  watch.py         SceneWatch: the capture thread's look at the picture -> SceneChange messages
"""

from stream_detector.detect.events import EventPolicy, EventTracker, policy_for
from stream_detector.detect.frame_scorer import (
    CameraModels,
    FrameScorer,
    ScorerFactory,
    ignore_mask,
    lane_for,
    scoring_rate,
)
from stream_detector.detect.inference import TAMPERED, InferenceWorker, Item, Lane, Scorer
from stream_detector.detect.foreground import (
    SCENE_CHANNELS,
    SceneField,
    ScenePrior,
    fit_prior,
    scene_prior_of,
)
from stream_detector.detect.motion import FLOW_SCALE, MotionField, to_gray_u8, with_motion
from stream_detector.detect.preprocess import FramePreparer, Preprocessor, StreamChannels
from stream_detector.detect.scene import (
    PictureClass,
    SceneSample,
    measure,
    picture_of,
    similarity,
)
from stream_detector.detect.scoring import (
    ScoreBatch,
    ScoreSmoother,
    WindowScorer,
    ema,
    firing_cells,
    score_frames,
    score_together,
)
from stream_detector.detect.tamper import TamperDetector, Verdict
from stream_detector.detect.watch import SceneWatch, initial_model

__all__ = [
    "FLOW_SCALE",
    "SCENE_CHANNELS",
    "TAMPERED",
    "CameraModels",
    "EventPolicy",
    "EventTracker",
    "FramePreparer",
    "FrameScorer",
    "InferenceWorker",
    "Item",
    "Lane",
    "MotionField",
    "PictureClass",
    "Preprocessor",
    "SceneField",
    "ScenePrior",
    "SceneSample",
    "SceneWatch",
    "ScoreBatch",
    "ScoreSmoother",
    "Scorer",
    "ScorerFactory",
    "StreamChannels",
    "TamperDetector",
    "Verdict",
    "WindowScorer",
    "ema",
    "firing_cells",
    "fit_prior",
    "ignore_mask",
    "initial_model",
    "lane_for",
    "measure",
    "picture_of",
    "policy_for",
    "scene_prior_of",
    "score_frames",
    "score_together",
    "scoring_rate",
    "similarity",
    "to_gray_u8",
    "with_motion",
]
