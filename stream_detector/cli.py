"""Command line: fit, score, eval, demo. Exit codes: 0 ok, 2 bad input (one line on stderr), 130 interrupted."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stream_detector import __version__
from stream_detector.errors import UserError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "vtest"


def main(argv: Sequence[str] | None = None) -> int:
    # OpenCV and FFmpeg would print their own warnings for unreadable input; our one line says it.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"stream-detector: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stream-detector: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream-detector", description=__doc__)
    p.add_argument("--version", action="version", version=f"stream-detector {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="learn a scene's normal behaviour from unlabelled normal footage")
    f.add_argument("--source", action="append", required=True, help="video file or folder (repeatable)")
    f.add_argument("--out", required=True, type=Path, help="model directory to write")
    f.add_argument("--config", type=Path, help="TOML file with a [detector] table")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    f.add_argument("--epochs", type=int, help="training epochs (default from config)")
    f.set_defaults(handler=_fit)

    s = sub.add_parser("score", help="score every frame of a video (causal) into a CSV")
    s.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    s.add_argument("--source", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path, help="CSV: frame,score,warmup")
    s.add_argument("--maps", type=Path, help="also write per-cell score maps (.npy, frames x rows x cols)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(handler=_score)

    e = sub.add_parser("eval", help="AUC, false alarms per hour and plots on labelled video")
    e.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    e.add_argument("--data", required=True, type=Path, help="folder with test/*.mp4 and labels.json")
    e.add_argument("--report", required=True, type=Path, help="folder for summary.json and plots")
    e.add_argument("--false-alarms-per-hour", type=float, default=1.0)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.set_defaults(handler=_eval)

    d = sub.add_parser("demo", help="score a demo stream live and print anomaly events as they happen")
    d.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    d.add_argument("--source", type=Path, help="video file (default: OpenCV's vtest.avi)")
    d.add_argument("--inject", default="300:380", help="START:END frames with a synthetic object; '' for none")
    d.add_argument("--speed", type=float, default=1.0, help="1 = native frame rate, 0 = as fast as possible")
    d.add_argument("--false-alarms-per-hour", type=float, default=1.0)
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    d.set_defaults(handler=_demo)
    return p


def _fit(args: argparse.Namespace) -> int:
    from stream_detector.config import load_detector_config
    from stream_detector.model.runtime import pick_device
    from stream_detector.train import fit

    cfg = load_detector_config(args.config, {"epochs": args.epochs})
    report = fit(args.source, args.out, cfg, pick_device(args.device))
    print(f"wrote {report.out_dir} ({report.frames} frames, {report.seconds:.0f}s, "
          f"final loss {report.final_loss:.5f}, threshold at 1 false alarm/h: "
          f"{report.threshold_1_per_hour:.2f})")
    return 0


def _decode(model_path: Path, device: str, source: Path) -> tuple[object, np.ndarray]:
    from stream_detector.capture import iter_frames, video_info
    from stream_detector.model.runtime import load
    from stream_detector.preprocess import Preprocessor

    model = load(model_path, device)
    info = video_info(source)
    model.check_source(info.width, info.height, str(source))
    prep = Preprocessor(*model.metadata["working_size"])
    return model, np.stack([prep(f) for f in iter_frames(source)])


def _score(args: argparse.Namespace) -> int:
    from stream_detector.scoring import score_frames

    model, frames = _decode(args.model, args.device, args.source)
    batch = score_frames(model.module, model.slicer, model.pretext, model.smoothing,  # type: ignore[attr-defined]
                         model.device, frames)  # type: ignore[attr-defined]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "score", "warmup"])
        for i, (v, warm) in enumerate(zip(batch.score, batch.warmup)):
            w.writerow([i, f"{v:.6f}", int(warm)])
    if args.maps:
        np.save(args.maps, batch.cell_score.astype(np.float32))
    print(f"wrote {args.out} ({len(frames)} frames, max score {batch.score.max():.2f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from stream_detector.evaluation import check_length, load_labelled, roc_curve, summarise
    from stream_detector.progress import Progress
    from stream_detector.report import roc_plot, stack_plots, timeline_plot, write_png
    from stream_detector.scoring import score_frames

    clips = load_labelled(args.data)
    names, scores, labels = [], [], []
    bar = Progress("evaluating", len(clips))
    model = None
    for i, clip in enumerate(clips):
        model, frames = _decode(args.model, args.device, clip.path)
        check_length(clip, len(frames))
        batch = score_frames(model.module, model.slicer, model.pretext, model.smoothing,  # type: ignore[attr-defined]
                             model.device, frames)  # type: ignore[attr-defined]
        names.append(clip.name)
        scores.append(batch.score)
        labels.append(clip.labels)
        bar.update(i + 1, clip.name)
    assert model is not None
    threshold = model.threshold(args.false_alarms_per_hour)  # type: ignore[attr-defined]
    result = summarise(names, scores, labels, threshold, model.metadata["fps"])  # type: ignore[attr-defined]
    out: Path = args.report
    fpr, tpr = roc_curve(np.concatenate(scores), np.concatenate(labels))
    write_png(out / "roc.png", roc_plot(fpr, tpr, f"frame-level ROC, causal scores: AUC {result.auc_causal:.3f}"))
    write_png(out / "timelines.png", stack_plots([timeline_plot(n, s, y, threshold)
                                                  for n, s, y in zip(names, scores, labels)]))
    summary = {"model": str(args.model), "data": str(args.data), **result.__dict__}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"frames {result.frames} ({result.anomalous_frames} anomalous) in {len(clips)} clips")
    print(f"frame-level micro AUC, causal scores:               {result.auc_causal:.4f}")
    print(f"frame-level micro AUC, literature protocol (per-clip min-max + Gaussian sigma 3, "
          f"not causal): {result.auc_literature:.4f}")
    print(f"threshold for {args.false_alarms_per_hour:g} false alarm(s)/h: {threshold:.3f} -> "
          f"{result.false_alarms_per_hour:.1f} false alarms/h, TPR {result.tpr_at_threshold:.3f}, "
          f"FPR {result.fpr_at_threshold:.3f}")
    print(f"report: {out / 'summary.json'}, {out / 'roc.png'}, {out / 'timelines.png'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stream_detector.capture import iter_frames, video_info
    from stream_detector.demo import DEMO_VIDEO, Injection
    from stream_detector.events import EventPolicy
    from stream_detector.messages import Frame
    from stream_detector.model.runtime import load
    from stream_detector.pipeline import FrameScorer, detect

    source = args.source or DEMO_VIDEO
    model = load(args.model, args.device)
    info = video_info(source)
    model.check_source(info.width, info.height, str(source))
    fps = info.fps or 25.0
    injection = None
    if args.inject:
        try:
            start, end = (int(v) for v in args.inject.split(":"))
        except ValueError:
            raise UserError(f"--inject {args.inject!r}: expected START:END frame numbers") from None
        injection = Injection(start, end)
        print(f"demo: {source.name}, synthetic bright object injected in frames {start}..{end - 1} "
              f"({start / fps:.1f}s..{end / fps:.1f}s)", file=sys.stderr)
    threshold = model.threshold(args.false_alarms_per_hour)
    policy = EventPolicy(threshold, 0.8 * threshold, min_duration=0.3, cooldown=1.0, update_interval=2.0)

    def frames() -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, img in enumerate(iter_frames(source)):
            if args.speed > 0:
                time.sleep(max(0.0, t0 + i / fps / args.speed - time.monotonic()))
            img = injection.apply(img, i) if injection else img
            yield Frame("demo", i, i / fps, time.time(), time.monotonic(), img)

    count = 0
    for s, events in detect(frames(), FrameScorer(model, threshold), policy, "demo"):
        for ev in events:
            count += 1
            print(json.dumps({"type": ev.type, "id": ev.id, "camera": ev.camera,
                              "frame": s.index, "stream_time": round(s.stream_time, 2),
                              "start_stream": round(ev.start_stream, 2), "peak_score": round(ev.peak_score, 2),
                              "threshold": round(threshold, 2),
                              "box": ev.box.as_list() if ev.box else None}), flush=True)
    print(f"demo: done, {count} event messages", file=sys.stderr)
    return 0
