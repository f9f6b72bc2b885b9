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


def replay(model: LoadedModel, clips: list[LabelledClip], rate: float) -> tuple[OperatorResult, list[Alarm]]:
    """The daemon's alarms on each clip at the threshold for `rate` false alarms per hour."""
    threshold = model.threshold(rate)
    alarms: list[Alarm] = []
    for clip in clips:
        _, batch = clip_scores(model, clip.path)
        info = video_info(clip.path)
        alarms += replay_alarms(clip.name, batch, model, threshold, (info.width, info.height))
    fps = float(model.metadata["fps"])
    return operator_metrics([c.name for c in clips], [c.labels for c in clips], alarms, fps), alarms


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


def summary(result: OperatorResult) -> dict[str, Any]:
    return {"false_alarm_onsets": len(result.false_alarms),
            "normal_seconds": round(result.normal_hours * 3600, 1),
            "episodes": len(result.episodes), "episodes_alarmed": result.alarmed,
            "median_delay_seconds": result.median_delay}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="labelled set: test/*.mp4, labels.json")
    p.add_argument("--false-alarms-per-hour", type=float, default=20.0,
                   help="the lowered setting both models are replayed at (default 20)")
    p.add_argument("--k", type=int, default=5, help="false alarms to mark (the first k)")
    p.add_argument("--pre", type=float, default=5.0)
    p.add_argument("--post", type=float, default=5.0)
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
    everything, alarms = replay(model, clips, rate)
    order = {c.name: i for i, c in enumerate(clips)}
    chosen = sorted(everything.false_alarms, key=lambda a: (order[a.clip], a.start))[:args.k]
    if len(chosen) < args.k or order[chosen[-1].clip] == len(clips) - 1:
        print(f"{len(everything.false_alarms)} false alarm(s) at this setting: too few to mark "
              f"{args.k} and hold clips back; lower the threshold further")
        return 1
    cut = order[chosen[-1].clip] + 1
    marking, held = clips[:cut], clips[cut:]
    store = mark(chosen, {c.name: c for c in marking}, args.workdir, fps, args.pre, args.post)
    report = tune(args.model, store, args.workdir / "tuned", device="cpu")
    tuned = load(args.workdir / "tuned", "cpu")
    names = {c.name for c in held}
    before = operator_metrics([c.name for c in held], [c.labels for c in held],
                              [a for a in alarms if a.clip in names], fps)
    after, _ = replay(tuned, held, rate)
    seen = operator_metrics([c.name for c in marking], [c.labels for c in marking],
                            [a for a in alarms if a.clip not in names], fps)
    alarmed = {(e.clip, e.first) for e in before.episodes if e.alarmed}
    kept = {(e.clip, e.first) for e in after.episodes if e.alarmed}
    out = {
        "model": str(args.model), "data": str(args.data), "false_alarms_per_hour": rate,
        "threshold": model.threshold(rate), "tuned_threshold": tuned.threshold(rate),
        "marked": [{"clip": a.clip, "frames": [a.start, a.end]} for a in chosen],
        "whole_test_set": {"clips": len(clips), **summary(everything)},
        "marking_part": {"clips": len(marking), **summary(seen)},
        "tune": {"frames": report.frames, "cells_widened": report.cells_widened,
                 "scale_growth": report.scale_growth},
        "held_back": {"clips": len(held), "before": summary(before), "after": summary(after),
                      "episodes_lost": sorted(alarmed - kept),
                      "episodes_gained": sorted(kept - alarmed)},
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
