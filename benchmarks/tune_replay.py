"""Tuning with verdicts, measured on a replay of a labelled set (UCSD Ped1 in docs/benchmarks.md):
the daemon's alarms at a lowered threshold on the test clips in order, the first k false alarms
marked false_alarm in an event store (their clips cut as the daemon cuts them, pre/post capture
included), `stream-detector tune` on that store, then the false-alarm onsets and the episodes
alarmed on the rest of the test set (the clips after the k-th false alarm's), before and after, at
the same setting.

    python benchmarks/tune_replay.py --model runs/ped1 --data ../shared/data/ucsd_ped1 \\
        --false-alarms-per-hour 20 --k 5 --workdir runs/tune-ped1

Nothing of the data or the models is written outside --workdir.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream_detector.capture import iter_frames, video_info
from stream_detector.messages import Event
from stream_detector.model import LoadedModel, load
from stream_detector.offline import clip_scores, load_labelled, replay_alarms, tune
from stream_detector.offline.evaluation import Alarm, LabelledClip, OperatorResult, operator_metrics
from stream_detector.outputs import EventStore, Reviews, event_payload


def replay(model: LoadedModel, clips: list[LabelledClip], rate: float,
           masks: BoxMasks | None = None) -> tuple[OperatorResult, list[Alarm]]:
    """The daemon's alarms on each clip at the threshold for `rate` false alarms per hour."""
    threshold = model.threshold(rate)
    alarms: list[Alarm] = []
    for clip in clips:
        _, batch = clip_scores(model, clip.path)
        info = video_info(clip.path)
        alarms += replay_alarms(clip.name, batch, model, threshold, (info.width, info.height))
    fps = float(model.metadata["fps"])
    return operator_metrics([c.name for c in clips], [c.labels for c in clips], alarms, fps,
                            masks), alarms  # type: ignore[arg-type]


def cut_clip(clip: LabelledClip, first: int, last: int, out: Path, fps: float) -> Path:
    """Frames first..last of a labelled clip as a video, as the daemon's recorder would keep them."""
    writer = None
    for i, frame in enumerate(iter_frames(clip.path, limit=last + 1)):
        if i < first:
            continue
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        writer.write(frame)
    assert writer is not None, f"{clip.path}: no frames {first}..{last}"
    writer.release()
    return out


def mark(alarms: list[Alarm], clips: dict[str, LabelledClip], workdir: Path, fps: float,
         pre: float, post: float) -> Path:
    """An event store holding `alarms` as ended events with clips, each marked false_alarm."""
    store_dir = workdir / "store"
    (store_dir / "clips").mkdir(parents=True)
    store = EventStore(store_dir / "events.sqlite")
    reviews = Reviews(store)
    for i, a in enumerate(alarms):
        clip = clips[a.clip]
        first = max(0, a.start - int(pre * fps))
        last = min(len(clip.labels) - 1, a.end + int(post * fps))
        path = cut_clip(clip, first, last, store_dir / "clips" / f"fa{i}.avi", fps)
        t0, t1 = 1e9 + i * 1000 + a.start / fps, 1e9 + i * 1000 + a.end / fps
        for kind, end in (("start", None), ("end", t1)):
            ev = Event(f"fa{i}", "ped1", kind, t0, a.start / fps, end, end, 0.0, a.start, None, 0.0)
            store.append(ev, event_payload(ev, None, host="replay",
                                           clip=str(path) if end else None,
                                           clip_start=t0 - (a.start - first) / fps if end else None))
        reviews.set(f"fa{i}", "false_alarm", "replay")
    store.close()
    return store_dir


class BoxMasks:
    """Where each labelled episode's object is, from a scenario kit's scenarios.json (per clip, per
    frame, [x0, y0, x1, y1] in source pixels or null), read the way operator_metrics reads masks
    (masks[clip][frame, rows, cols]) without holding a picture per frame."""

    def __init__(self, path: Path) -> None:
        self.boxes = {k: v["boxes"] for k, v in json.loads(path.read_text()).items()
                      if isinstance(v, dict) and "boxes" in v}

    def __contains__(self, clip: object) -> bool:
        return clip in self.boxes

    def __getitem__(self, clip: str) -> "BoxMasks.Clip":
        return BoxMasks.Clip(self.boxes[clip])

    class Clip:
        def __init__(self, boxes: list[list[int] | None]) -> None:
            self.boxes = boxes

        def __getitem__(self, index: tuple[int, slice, slice]) -> np.ndarray:
            frame, rows, cols = index
            box = self.boxes[frame] if frame < len(self.boxes) else None
            h, w = max(rows.stop, box[3] if box else 0), max(cols.stop, box[2] if box else 0)
            mask = np.zeros((h, w), bool)
            if box:
                mask[box[1]:box[3], box[0]:box[2]] = True
            return mask[rows, cols]


def lineage_of(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "metadata.json").read_text())["lineage"]


def cues_widened(model_dir: Path) -> dict[str, int]:
    """How many cells tuning widened, per cue."""
    out: dict[str, int] = {}
    for pair in lineage_of(model_dir)["widened"]:
        out[pair["cue"]] = out.get(pair["cue"], 0) + 1
    return out


def summary(result: OperatorResult) -> dict[str, Any]:
    out = {"false_alarm_onsets": len(result.false_alarms),
           "normal_seconds": round(result.normal_hours * 3600, 1),
           "episodes": len(result.episodes), "episodes_alarmed": result.alarmed,
           "median_delay_seconds": result.median_delay}
    if any(e.box_overlaps is not None for e in result.episodes):  # a kit says where the object is
        out["episodes_alarmed_on_the_object"] = sum(bool(e.box_overlaps) for e in result.episodes)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="labelled set: test/*.mp4, labels.json")
    p.add_argument("--false-alarms-per-hour", type=float, default=20.0,
                   help="the lowered setting both models are replayed at (default 20)")
    p.add_argument("--k", type=int, default=5, help="false alarms to mark (the first k)")
    p.add_argument("--pre", type=float, default=5.0)
    p.add_argument("--post", type=float, default=5.0)
    p.add_argument("--widen", choices=["everywhere", "fired"], default="everywhere",
                   help="tune's method: every cue of every cell (default), or the cues and cells "
                        "that fired, aimed under the replayed setting's threshold")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    started = time.monotonic()
    clips = load_labelled(args.data)
    model = load(args.model, "cpu")
    fps = float(model.metadata["fps"])
    rate = args.false_alarms_per_hour
    kit = args.data / "scenarios.json"
    masks = BoxMasks(kit) if kit.is_file() else None
    everything, alarms = replay(model, clips, rate, masks)
    order = {c.name: i for i, c in enumerate(clips)}
    chosen = sorted(everything.false_alarms, key=lambda a: (order[a.clip], a.start))[:args.k]
    if len(chosen) < args.k or order[chosen[-1].clip] == len(clips) - 1:
        print(f"{len(everything.false_alarms)} false alarm(s) at this setting: too few to mark "
              f"{args.k} and hold clips back; lower the threshold further")
        return 1
    cut = order[chosen[-1].clip] + 1
    marking, held = clips[:cut], clips[cut:]
    store = mark(chosen, {c.name: c for c in marking}, args.workdir, fps, args.pre, args.post)
    # The camera runs at the replayed setting: the marked false alarms must not fire there.
    report = tune(args.model, store, args.workdir / "tuned", device="cpu",
                  false_alarms_per_hour=rate, widen=args.widen)
    tuned = load(args.workdir / "tuned", "cpu")
    names = {c.name for c in held}
    before = operator_metrics([c.name for c in held], [c.labels for c in held],
                              [a for a in alarms if a.clip in names], fps, masks)  # type: ignore[arg-type]
    after, _ = replay(tuned, held, rate, masks)
    seen = operator_metrics([c.name for c in marking], [c.labels for c in marking],
                            [a for a in alarms if a.clip not in names], fps, masks)  # type: ignore[arg-type]
    alarmed = {(e.clip, e.first) for e in before.episodes if e.alarmed}
    kept = {(e.clip, e.first) for e in after.episodes if e.alarmed}
    on_object = {(e.clip, e.first) for e in before.episodes if e.alarmed and e.box_overlaps}
    kept_on_object = {(e.clip, e.first) for e in after.episodes if e.alarmed and e.box_overlaps}
    out = {
        "model": str(args.model), "data": str(args.data), "false_alarms_per_hour": rate,
        "threshold": model.threshold(rate), "tuned_threshold": tuned.threshold(rate),
        "marked": [{"clip": a.clip, "frames": [a.start, a.end]} for a in chosen],
        "whole_test_set": {"clips": len(clips), **summary(everything)},
        "marking_part": {"clips": len(marking), **summary(seen)},
        "tune": {"widen": args.widen, "frames": report.frames,
                 "cells_widened": report.cells_widened, "scale_growth": report.scale_growth,
                 "cues_widened": cues_widened(args.workdir / "tuned"),
                 "peak_scores": lineage_of(args.workdir / "tuned")["peak_scores"]},
        "held_back": {"clips": len(held), "before": summary(before), "after": summary(after),
                      "episodes_lost": sorted(alarmed - kept),
                      "episodes_gained": sorted(kept - alarmed),
                      **({"episodes_lost_on_the_object": sorted(on_object - kept_on_object)}
                         if masks is not None else {})},
        "seconds": round(time.monotonic() - started, 1),
    }
    b, a = out["held_back"]["before"], out["held_back"]["after"]
    drop = 1 - a["false_alarm_onsets"] / b["false_alarm_onsets"] if b["false_alarm_onsets"] else 0.0
    out["held_back"]["false_alarm_reduction"] = round(drop, 3)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
