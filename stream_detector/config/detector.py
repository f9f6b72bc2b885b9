"""Detector settings: how a model sees a scene and how it is fitted (`fit --config`, [detector])."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_detector.config.loading import check, from_mapping, read_toml


@dataclass(frozen=True)
class DetectorConfig:
    """How a model sees a scene and how it is fitted. Stored in the model's metadata."""

    width: int = 0  # working width in pixels; 0 = derive from the footage's aspect (long side 192)
    height: int = 0  # working height; 0 = derive
    long_side: int = 192  # used when width/height are 0: resolution vs. speed trade-off
    color: bool = False  # keep colour (3 channels) instead of grayscale: for scenes where hue matters
    motion: bool = True  # dense optical flow as two more input channels, predicted and scored too
    window: int = 8  # T: frames per window (T-1 context frames predict the last one)
    cell: int = 16  # space-slice size in working pixels
    cell_stride: int = 8  # step between space slices; < cell means overlapping slices
    channels: int = 32  # spatial-branch width
    temporal_channels: int = 16  # temporal-branch width
    # "predict" the last frame (and its motion) from the others, "reconstruct" it, or predict its
    # "motion" from the window's appearance alone.
    pretext: str = "motion"
    flow_weight: float = 1.0  # weight of the motion channels' loss beside the appearance loss
    # Scene channels (detect/foreground.py): foreground against the stream's own background, and how
    # long it has stood still there. They feed the occupancy and dwell cues.
    scene: bool = True
    learn_seconds: float = 3.0  # a stream's background: the median of its first seconds
    adapt_seconds: float = 120.0  # then it follows slow change (light) where nothing stands
    still_seconds: float = 1.0  # a foreground pixel is still when it matches its last second
    # Cell score = weighted sum of the cues' z-scores against their per-cell baselines: appearance
    # error, motion error, speed, heading (motion cues), occupancy, dwell (scene cues). Pretext
    # "motion" has no appearance error; with "predict", give the first weight a value. Heading is
    # measured but weighs 0: on the scenes measured (docs/benchmarks.md) it raised normal footage
    # more than the anomalies it was meant for.
    cue_weights: tuple[float, float, float, float, float, float] = (0.0, 0.5, 1.0, 0.0, 0.5, 1.0)
    holdout: float = 0.25  # share of the footage held back from training to set baseline + threshold
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    max_train_frames: int = 6000  # cap on frames held in memory for fitting
    # Baselines of the motion cues: a cell's median, and its `baseline_quantile` among the frames
    # something moved there (occupancy over `active_share`), so a cell is judged by what moves
    # through it, not by how often something does; shrunk toward its row's value by `row_prior`
    # frames (a row is one distance from the camera), so cells little footage covers stay sane.
    baseline_quantile: float = 0.98
    active_share: float = 0.2
    row_prior: float = 50.0
    # Scene cues: a cell's median and 99th percentile, with these least scales (a share of the cell,
    # seconds): where normal footage never had anything, a third of a cell or two seconds of
    # standing still is one unit.
    occupancy_floor: float = 0.3
    dwell_floor: float = 2.0
    dwell_border: int = 1  # cells along the frame's edge that dwell never counts in
    smoothing: float = 0.5  # causal EMA weight of the newest frame score (1.0 = no smoothing)
    region: int = 3  # motion cues: a frame's score is its best mean over region x region cells
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.width == 0 or self.width >= 32, "width", "must be 0 (auto) or >= 32")
        check(self.height == 0 or self.height >= 32, "height", "must be 0 (auto) or >= 32")
        check((self.width == 0) == (self.height == 0), "width", "set width and height together")
        check(64 <= self.long_side <= 1024, "long_side", "must be in 64..1024")
        check(3 <= self.window <= 32, "window", "must be in 3..32")
        check(4 <= self.cell <= 128 and self.cell % 4 == 0, "cell", "must be a multiple of 4 in 4..128")
        check(1 <= self.cell_stride <= self.cell, "cell_stride", "must be in 1..cell")
        check(4 <= self.channels <= 256, "channels", "must be in 4..256")
        check(4 <= self.temporal_channels <= 256, "temporal_channels", "must be in 4..256")
        check(self.pretext in ("predict", "reconstruct", "motion"), "pretext",
               "must be 'predict', 'reconstruct' or 'motion'")
        check(self.pretext != "motion" or self.motion, "pretext", "'motion' needs motion = true")
        check(0 <= self.flow_weight <= 100, "flow_weight", "must be in 0..100")
        check(len(self.cue_weights) == 6 and all(0 <= w <= 100 for w in self.cue_weights)
               and sum(self.cue_weights) > 0, "cue_weights", "must be 6 numbers in 0..100, not all 0")
        check(0.5 <= self.learn_seconds <= 600, "learn_seconds", "must be in 0.5..600")
        check(1 <= self.adapt_seconds <= 86400, "adapt_seconds", "must be in 1..86400")
        check(0.1 <= self.still_seconds <= 60, "still_seconds", "must be in 0.1..60")
        check(0 <= self.holdout <= 0.5, "holdout", "must be in 0..0.5")
        check(0 <= self.epochs <= 10000, "epochs", "must be in 0..10000")
        check(1 <= self.batch_size <= 4096, "batch_size", "must be in 1..4096")
        check(0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        check(self.max_train_frames >= 16, "max_train_frames", "must be >= 16")
        check(0.5 <= self.baseline_quantile < 1, "baseline_quantile", "must be in 0.5..1 (excluded)")
        check(0 < self.active_share < 1, "active_share", "must be in (0, 1)")
        check(0 <= self.row_prior <= 1e6, "row_prior", "must be in 0..1e6")
        check(0 < self.occupancy_floor <= 1, "occupancy_floor", "must be in (0, 1]")
        check(0 < self.dwell_floor <= 3600, "dwell_floor", "must be in (0, 3600]")
        check(0 <= self.dwell_border <= 8, "dwell_border", "must be in 0..8")
        check(0 < self.smoothing <= 1, "smoothing", "must be in (0, 1]")
        check(1 <= self.region <= 16, "region", "must be in 1..16")

    def working_size(self, source_width: int, source_height: int) -> tuple[int, int]:
        """(width, height) used for a source; auto sizes keep the aspect, multiples of 8."""
        if self.width:
            return self.width, self.height
        scale = self.long_side / max(source_width, source_height)
        def snap(v: float) -> int:
            return max(32, int(round(v / 8)) * 8)
        return snap(source_width * scale), snap(source_height * scale)


def load_detector_config(path: Path | None, overrides: dict[str, Any] | None = None) -> DetectorConfig:
    """Detector settings from an optional TOML file ([detector] table) plus command-line overrides."""
    data: dict[str, Any] = {}
    where = "detector"
    if path is not None:
        doc = read_toml(path)
        data = dict(doc.get("detector", {}))
        where = f"{path}: detector"
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(DetectorConfig, data, where)
