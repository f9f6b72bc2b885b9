"""Evaluation on labelled video: frame-level AUC (causal and literature protocol), false alarms per hour.

Labelled data: DIR/test/*.<video> and DIR/labels.json = {clip stem: [0/1 per decoded frame]}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_detector.capture import VIDEO_SUFFIXES
from stream_detector.errors import DataError

LITERATURE_SIGMA = 3.0  # frames; Gaussian smoothing used by the per-video normalised protocol


@dataclass(frozen=True)
class LabelledClip:
    name: str
    path: Path
    labels: np.ndarray  # (n,) 0/1


@dataclass
class EvalResult:
    auc_causal: float
    auc_literature: float
    false_alarms_per_hour: float
    threshold: float
    tpr_at_threshold: float
    fpr_at_threshold: float
    frames: int
    anomalous_frames: int
    per_clip_auc: dict[str, float] = field(default_factory=dict)


def load_labelled(data_dir: Path) -> list[LabelledClip]:
    """The clips of a labelled set, checked: every video has a label list and vice versa."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    label_path = data_dir / "labels.json"
    try:
        labels = json.loads(label_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{data_dir}: no labels.json (expected {{clip: [0/1 per frame]}})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{label_path}: unreadable ({exc})") from None
    test_dir = data_dir / "test"
    videos = sorted(p for p in test_dir.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) \
        if test_dir.is_dir() else []
    if not videos:
        raise DataError(f"{data_dir}: no videos under test/")
    if not isinstance(labels, dict):
        raise DataError(f"{label_path}: expected an object mapping clip names to label lists")
    clips = []
    for video in videos:
        if video.stem not in labels:
            raise DataError(f"{label_path}: no labels for {video.name}")
        values = labels[video.stem]
        if not isinstance(values, list) or any(v not in (0, 1) for v in values):
            raise DataError(f"{label_path}: labels of {video.stem} must be a list of 0/1")
        clips.append(LabelledClip(video.stem, video, np.asarray(values, dtype=np.int8)))
    extra = sorted(set(labels) - {v.stem for v in videos})
    if extra:
        raise DataError(f"{label_path}: labels for {extra[0]} but no such video under test/")
    return clips


def load_masks(data_dir: Path) -> dict[str, np.ndarray] | None:
    """Pixel-level masks when the set has them (DIR/pixel_masks.npz: per clip, packbits along the
    last axis of a (frames, H, W) boolean array); None otherwise."""
    path = data_dir / "pixel_masks.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return {k: np.unpackbits(z[k], axis=-1).astype(bool) for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable pixel masks ({exc})") from None


def check_length(clip: LabelledClip, frames: int) -> None:
    if frames != len(clip.labels):
        raise DataError(f"{clip.path}: video has {frames} frames but labels.json lists "
                        f"{len(clip.labels)} for {clip.name}")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0,0) to (1,1)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(scores)[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    return (np.r_[0.0, fp / max(1, (~labels).sum())], np.r_[0.0, tp / max(1, labels.sum())])


def literature_scores(per_clip: Sequence[np.ndarray], sigma: float = LITERATURE_SIGMA) -> list[np.ndarray]:
    """Per-clip min-max normalisation then Gaussian smoothing: uses whole clips, so NOT causal."""
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    out = []
    for s in per_clip:
        span = float(s.max() - s.min())
        norm = (s - s.min()) / span if span > 0 else np.zeros_like(s)
        padded = np.pad(norm, radius, mode="edge")
        out.append(np.convolve(padded, kernel, mode="valid"))
    return out


def false_alarms(per_clip: Sequence[np.ndarray], labels: Sequence[np.ndarray], threshold: float,
                 fps: float) -> float:
    """Alarms per hour of normal footage: runs above the threshold that touch no anomalous frame."""
    count, normal_frames = 0, 0
    for s, y in zip(per_clip, labels):
        above = s > threshold
        normal_frames += int((y == 0).sum())
        starts = np.nonzero(above & ~np.r_[False, above[:-1]])[0]
        ends = np.nonzero(above & ~np.r_[above[1:], False])[0]
        count += sum(1 for a, b in zip(starts, ends) if not y[a:b + 1].any())
    hours = normal_frames / fps / 3600.0
    return count / hours if hours > 0 else float("nan")


def summarise(names: Sequence[str], scores: Sequence[np.ndarray], labels: Sequence[np.ndarray],
              threshold: float, fps: float) -> EvalResult:
    all_s, all_y = np.concatenate(scores), np.concatenate(labels).astype(bool)
    lit = np.concatenate(literature_scores(scores))
    above = all_s > threshold
    return EvalResult(
        auc_causal=roc_auc(all_s, all_y),
        auc_literature=roc_auc(lit, all_y),
        false_alarms_per_hour=false_alarms(scores, labels, threshold, fps),
        threshold=threshold,
        tpr_at_threshold=float(above[all_y].mean()) if all_y.any() else float("nan"),
        fpr_at_threshold=float(above[~all_y].mean()) if (~all_y).any() else float("nan"),
        frames=int(all_s.size),
        anomalous_frames=int(all_y.sum()),
        per_clip_auc={n: roc_auc(s, y) for n, s, y in zip(names, scores, labels)},
    )


# --- What an operator gets: alarms (events as the daemon raises them) against labelled episodes ---

@dataclass(frozen=True)
class Alarm:
    """One event on a labelled clip, in frame indices (the cli replays the daemon's event tracker)."""

    clip: str
    start: int  # first frame of the event (the run over the threshold that started it)
    raised: int  # frame at which the daemon publishes `start` (after min_duration)
    end: int  # last frame of the event, inclusive
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) source pixels, as in `start`


@dataclass(frozen=True)
class Episode:
    clip: str
    first: int
    last: int  # inclusive
    alarmed: bool
    delay_seconds: float | None  # from the episode's first frame to the first alarm raised in it
    box_overlaps: bool | None = None  # the alarm's box touches the labelled pixels (when masks exist)


@dataclass(frozen=True)
class OperatorResult:
    episodes: list[Episode]
    false_alarms: list[Alarm]
    normal_hours: float

    @property
    def alarmed(self) -> int:
        return sum(e.alarmed for e in self.episodes)

    @property
    def median_delay(self) -> float | None:
        d = [e.delay_seconds for e in self.episodes if e.delay_seconds is not None]
        return float(np.median(d)) if d else None

    @property
    def false_alarms_per_hour(self) -> float:
        return len(self.false_alarms) / self.normal_hours if self.normal_hours > 0 else float("nan")

    def as_dict(self) -> dict[str, object]:
        located = [e.box_overlaps for e in self.episodes if e.box_overlaps is not None]
        return {
            "episodes": len(self.episodes),
            "episodes_alarmed": self.alarmed,
            "median_delay_seconds": self.median_delay,
            "worst_delay_seconds": max((e.delay_seconds for e in self.episodes
                                        if e.delay_seconds is not None), default=None),
            "false_alarm_onsets": len(self.false_alarms),
            "false_alarms_per_hour_of_normal_footage": self.false_alarms_per_hour,
            "normal_hours": self.normal_hours,
            "alarm_boxes_on_anomaly": (sum(located), len(located)) if located else None,
            "per_episode": [e.__dict__ for e in self.episodes],
            "false_alarms": [a.__dict__ for a in self.false_alarms],
        }


def episodes_of(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of labelled frames: (first, last) inclusive."""
    y = np.asarray(labels).astype(bool)
    starts = np.nonzero(y & ~np.r_[False, y[:-1]])[0]
    ends = np.nonzero(y & ~np.r_[y[1:], False])[0]
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def operator_metrics(names: Sequence[str], labels: Sequence[np.ndarray], alarms: Sequence[Alarm],
                     fps: float, masks: dict[str, np.ndarray] | None = None) -> OperatorResult:
    """Per episode: alarmed at all, and how late; alarms that touch no labelled frame are false.

    An episode counts as alarmed when an alarm is raised inside it or is already on when it starts
    (delay 0). masks: per clip (frames, H, W) booleans in source pixels, to check the alarm's box.
    """
    by_clip: dict[str, list[Alarm]] = {}
    for a in alarms:
        by_clip.setdefault(a.clip, []).append(a)
    episodes, false = [], []
    normal_frames = 0
    for name, y in zip(names, labels):
        y = np.asarray(y).astype(bool)
        normal_frames += int((~y).sum())
        mine = sorted(by_clip.get(name, []), key=lambda a: a.raised)
        for first, last in episodes_of(y):
            hits = [a for a in mine if a.raised <= last and a.end >= first]
            if not hits:
                episodes.append(Episode(name, first, last, False, None))
                continue
            hit = hits[0]
            at = max(hit.raised, first)
            overlaps = None
            if masks is not None and name in masks and hit.box is not None:
                x0, y0, x1, y1 = hit.box
                overlaps = bool(masks[name][at, y0:y1, x0:x1].any())
            episodes.append(Episode(name, first, last, True, (at - first) / fps, overlaps))
        false.extend(a for a in mine if not y[a.start:a.end + 1].any())
    return OperatorResult(episodes, false, normal_frames / fps / 3600.0)
