"""Command line: fit, score, eval, bench, run, check-config, events, sign.

Exit codes: 0 ok, 2 bad input (one line on stderr, arguments included), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from stream_detector import __version__
from stream_detector.daemon import load_config  # not the app: config errors need no torch
from stream_detector.errors import UserError
from stream_detector.config import DEFAULT_MODEL  # not model/: config errors need no torch

if TYPE_CHECKING:
    from stream_detector.config import DaemonConfig
    from stream_detector.evaluation import Alarm
    from stream_detector.model.runtime import LoadedModel
    from stream_detector.detect import ScoreBatch


class _ArgumentError(UserError):
    """A bad command-line argument: one line like every other bad input, not argparse's usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("stream-detector").strip()
        raise _ArgumentError(f"{command + ': ' if command else ''}{message} (see --help)")


def main(argv: Sequence[str] | None = None) -> int:
    # OpenCV and FFmpeg would print their own warnings for unreadable input; our one line says it.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"stream-detector: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stream-detector: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stream-detector", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"stream-detector {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="learn a scene's normal behaviour from unlabelled normal footage")
    f.add_argument("--source", action="append", required=True, help="video file or folder (repeatable)")
    f.add_argument("--out", required=True, type=Path, help="model directory to write")
    f.add_argument("--config", type=Path, help="TOML file with a [detector] table")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    f.add_argument("--epochs", type=_count(0), help="training epochs (default from config)")
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
    e.add_argument("--false-alarms-per-hour", type=_positive, default=1.0)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.set_defaults(handler=_eval)

    b = sub.add_parser("bench", help="frames/s of decode, model and full pipeline on one video")
    b.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    b.add_argument("--source", type=Path, help="video file (default: OpenCV's vtest.avi)")
    b.add_argument("--frames", type=_count(1), default=400)
    b.add_argument("--batch", type=_count(1), default=8, help="windows per model call (8 fits CPU caches best)")
    b.add_argument("--threads", type=_count(0), default=0,
                   help="torch CPU threads (0 = the daemon's auto: half the cores)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.set_defaults(handler=_bench)

    r = sub.add_parser("run", help="run the daemon: cameras in, events out (SIGHUP reloads the config)")
    r.add_argument("--config", type=Path, help="TOML config (default: the embedded demo configuration)")
    r.set_defaults(handler=_run)

    c = sub.add_parser("check-config", help="validate a config file and its models without starting")
    c.add_argument("config", type=Path)
    c.add_argument("--probe", action="store_true",
                   help="also open each camera once and read a frame (network cameras included)")
    c.add_argument("--timeout", type=_positive, default=20.0,
                   help="seconds each probe may take to deliver a frame")
    c.set_defaults(handler=_check_config)

    v = sub.add_parser("events", help="list stored events")
    v.add_argument("--config", type=Path, help="config whose storage to read (default: embedded default)")
    v.add_argument("--camera")
    v.add_argument("--since", help="epoch seconds, ISO time (2026-11-25T10:00) or an age: 30m, 2h, 1d")
    v.add_argument("--limit", type=_count(1), default=1000)
    v.set_defaults(handler=_events)

    g = sub.add_parser("sign", help="re-seal a model directory after a deliberate edit (model card)")
    g.add_argument("model", type=Path)
    g.set_defaults(handler=_sign)
    return p


def _count(lowest: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `lowest` (argparse names the option in its one line)."""
    def parse(text: str) -> int:
        value = int(text)  # ValueError: argparse says "invalid ... value"
        if not lowest <= value <= 10**9:
            raise argparse.ArgumentTypeError(f"{value} is not in {lowest}..{10**9}")
        return value
    parse.__name__ = "integer"
    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)  # ValueError: argparse says "invalid number value"
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


_positive.__name__ = "number"


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


def _clip_scores(model: LoadedModel, source: Path) -> tuple[int, ScoreBatch]:
    """Decode a whole file and score it causally; returns (frames, scores)."""
    from stream_detector.capture import iter_frames, video_info
    from stream_detector.detect import Preprocessor, score_frames

    info = video_info(source)
    model.check_source(info.width, info.height, str(source))
    prep = Preprocessor.for_model(model.metadata)
    frames = np.stack([prep(f) for f in iter_frames(source)])
    return len(frames), score_frames(model.module, model.slicer, model.smoothing,
                                     model.device, frames)


def _score(args: argparse.Namespace) -> int:
    from stream_detector.model.runtime import load

    n, batch = _clip_scores(load(args.model, args.device), args.source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "score", "warmup"])
        for i, (v, warm) in enumerate(zip(batch.score, batch.warmup)):
            w.writerow([i, f"{v:.6f}", int(warm)])
    if args.maps:
        np.save(args.maps, batch.cell_score.astype(np.float32))
    print(f"wrote {args.out} ({n} frames, max score {batch.score.max():.2f})")
    return 0


def _replay_alarms(name: str, batch: ScoreBatch, model: LoadedModel, threshold: float,
                   size: tuple[int, int]) -> list[Alarm]:
    """The events the daemon would raise on this clip (default camera settings), as frame ranges."""
    from stream_detector.config import CameraConfig
    from stream_detector.evaluation import Alarm
    from stream_detector.detect import EventTracker, firing_cells, policy_for
    from stream_detector.messages import FrameScore

    tracker = EventTracker(name, policy_for(threshold, CameraConfig(source=name)))
    fps = float(model.metadata["fps"])
    alarms: list[Alarm] = []
    open_at: tuple[int, int, tuple[int, int, int, int] | None] | None = None
    for i, score in enumerate(batch.score):
        cells = batch.cell_score[i]
        box = None
        if score > threshold:
            box = model.slicer.box_of(firing_cells(cells, threshold), *size)
        t = i / fps
        for ev in tracker.observe(FrameScore(name, i, t, t, t, float(score), float(batch.raw_score[i]),
                                             bool(batch.warmup[i]), cells, box)):
            if ev.type == "start":
                b = (ev.box.x0, ev.box.y0, ev.box.x1, ev.box.y1) if ev.box else None
                open_at = (int(round(ev.start_stream * fps)), i, b)
            elif ev.type == "end" and open_at is not None:
                alarms.append(Alarm(name, open_at[0], open_at[1], i, open_at[2]))
                open_at = None
    if open_at is not None:
        alarms.append(Alarm(name, open_at[0], open_at[1], len(batch.score) - 1, open_at[2]))
    return alarms


def _eval(args: argparse.Namespace) -> int:
    from stream_detector.capture import video_info
    from stream_detector.evaluation import (check_length, load_labelled, load_masks, operator_metrics,
                                            roc_curve, summarise)
    from stream_detector.model.runtime import load
    from stream_detector.progress import Progress
    from stream_detector.report import roc_plot, stack_plots, timeline_plot, write_png

    clips = load_labelled(args.data)
    model = load(args.model, args.device)
    threshold = model.threshold(args.false_alarms_per_hour)
    fps = float(model.metadata["fps"])
    names, scores, labels, alarms = [], [], [], []
    bar = Progress("evaluating", len(clips))
    for i, clip in enumerate(clips):
        n, batch = _clip_scores(model, clip.path)
        check_length(clip, n)
        info = video_info(clip.path)
        names.append(clip.name)
        scores.append(batch.score)
        labels.append(clip.labels)
        alarms.extend(_replay_alarms(clip.name, batch, model, threshold, (info.width, info.height)))
        bar.update(i + 1, clip.name)
    result = summarise(names, scores, labels, threshold, fps)
    operator = operator_metrics(names, labels, alarms, fps, load_masks(args.data))
    out: Path = args.report
    fpr, tpr = roc_curve(np.concatenate(scores), np.concatenate(labels))
    write_png(out / "roc.png", roc_plot(fpr, tpr, f"frame-level ROC, causal scores: AUC {result.auc_causal:.3f}"))
    write_png(out / "timelines.png", stack_plots([
        timeline_plot(n, s, y, threshold, [(a.start, a.raised, a.end) for a in alarms if a.clip == n])
        for n, s, y in zip(names, scores, labels)]))
    summary = {"model": str(args.model), "data": str(args.data), **result.__dict__,
               "false_alarms_per_hour_target": args.false_alarms_per_hour,
               "operator": operator.as_dict()}
    summary["per_clip_auc"] = {k: (None if np.isnan(v) else v)  # undefined for all-anomalous clips
                               for k, v in result.per_clip_auc.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"frames {result.frames} ({result.anomalous_frames} anomalous) in {len(clips)} clips")
    print(f"frame-level micro AUC, causal scores:               {result.auc_causal:.4f}")
    print(f"frame-level micro AUC, literature protocol (per-clip min-max + Gaussian sigma 3, "
          f"not causal): {result.auc_literature:.4f}")
    print(f"threshold for {args.false_alarms_per_hour:g} false alarm(s)/h: {threshold:.3f} -> "
          f"TPR {result.tpr_at_threshold:.3f}, FPR {result.fpr_at_threshold:.3f} (frames)")
    delay = operator.median_delay
    print(f"episodes alarmed at that threshold (daemon's default event settings): "
          f"{operator.alarmed} of {len(operator.episodes)}, median delay "
          + (f"{delay:.1f} s" if delay is not None else "-")
          + f"; false alarm onsets {len(operator.false_alarms)} in {operator.normal_hours * 3600:.0f} s "
          f"of normal footage ({operator.false_alarms_per_hour:.1f}/h)")
    located = operator.as_dict()["alarm_boxes_on_anomaly"]
    if located:
        print(f"alarm boxes on the labelled anomaly (pixel masks): {located[0]} of {located[1]}")
    print(f"report: {out / 'summary.json'}, {out / 'roc.png'}, {out / 'timelines.png'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import platform

    import torch

    from stream_detector import benchmark
    from stream_detector.capture import DEMO_VIDEO
    from stream_detector.config import InferenceConfig
    from stream_detector.model import keep_tensors_in_the_heap, load, torch_threads

    # The daemon's choices unless told otherwise, so the figures are the daemon's.
    keep_tensors_in_the_heap()
    torch.set_num_threads(torch_threads(InferenceConfig(torch_threads=args.threads), os.cpu_count() or 1))
    model = load(args.model, args.device)
    source = args.source or DEMO_VIDEO
    results = benchmark.run(model, source, args.frames, args.batch)
    w, h = model.metadata["working_size"]
    print(f"model {args.model} at {w}x{h}, window {model.slicer.window}, device {model.device}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    decode = results[0].fps
    for r in results:
        print(f"{r.name:42s} {r.fps:8.1f} frames/s  ({r.frames} frames in {r.seconds:.2f}s, "
              f"{r.fps / decode:.2f}x decode)")
    return 0


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)  # before importing the daemon's app (torch): errors come fast

    from stream_detector.daemon import run

    return run(cfg, args.config)


def _check_config(args: argparse.Namespace) -> int:
    """Everything `run` checks before it starts, nothing started; --probe also reads each camera."""
    cfg = load_config(args.config)  # before importing the pipeline (torch), as in _run

    from stream_detector.errors import ConfigError, SourceError
    from stream_detector.daemon import check_cameras, model_key

    models = check_cameras(cfg, cfg.device, cfg.inference.precision)
    failed = []
    for name, cam in cfg.cameras.items() if args.probe else ():
        try:
            width, height = _probe(cfg, name, args.timeout)
            model = models[model_key(cam, cfg.device)]
            model.check_source(width, height, f"{width}x{height} frames")
        except SourceError as exc:
            print(f"camera {name}: FAILED: {exc}")
            failed.append((name, exc))
        else:
            print(f"camera {name}: ok, {width}x{height} frames")
    if failed:
        name, exc = failed[0]
        more = f" ({len(failed) - 1} more camera(s) failed, see above)" if len(failed) > 1 else ""
        key = "detect_source" if cfg.cameras[name].detect_source else "source"  # what is scored
        raise ConfigError(f"{cfg.path}: cameras.{name}.{key}: probe failed: {exc}{more}")
    print(f"{args.config}: ok ({len(cfg.cameras)} camera(s): {', '.join(cfg.cameras)}"
          f"{', each delivered a frame' if args.probe else ''})")
    return 0


def _probe(cfg: DaemonConfig, name: str, timeout: float) -> tuple[int, int]:
    """Open a camera's source once and read one frame within `timeout` seconds: (width, height).

    The read runs on its own thread so a hung camera costs `timeout`, not forever; the thread is not
    a daemon (see camera._Reader), so exit waits for the source's own timeouts to free it.
    """
    import threading

    import numpy as np

    from stream_detector.capture import redact, scored_config, source_for
    from stream_detector.errors import SourceError

    cam = scored_config(cfg.cameras[name])  # the stream its model must fit
    result: list[np.ndarray | SourceError | None] = []

    def attempt() -> None:
        source = source_for(cam)
        try:
            source.open()
            result.append(source.read())
        except SourceError as exc:
            result.append(exc)
        finally:
            source.close()

    thread = threading.Thread(target=attempt, name=f"probe-{name}")
    thread.start()
    thread.join(timeout)
    what = redact(cam.source)
    if not result:
        raise SourceError(f"{what}: no frame within {timeout:g}s")
    if isinstance(result[0], SourceError):
        raise result[0]
    if result[0] is None:
        raise SourceError(f"{what}: opened, but no frame could be read or decoded")
    return int(result[0].shape[1]), int(result[0].shape[0])


def _parse_since(text: str) -> float:
    import datetime as dt

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(text[:-1]) * units[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        stamp = dt.datetime.fromisoformat(text)
        return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise UserError(f"--since {text!r}: expected epoch seconds, an ISO time or an age like 2h") from None


def _events(args: argparse.Namespace) -> int:
    import datetime as dt

    from stream_detector.config import CAMERA_NAME_CHARS
    from stream_detector.errors import ConfigError
    from stream_detector.outputs import FILE_NAME, EventStore

    cfg = load_config(args.config, environment=False)  # the daemon may hold the port: not checked
    since = _parse_since(args.since) if args.since else None
    if args.camera is not None and not (args.camera and set(args.camera) <= CAMERA_NAME_CHARS):
        raise UserError(f"--camera {args.camera!r}: camera names use letters, digits, '_' and '-' only")
    path = Path(cfg.storage.path) / FILE_NAME
    if not path.is_file():  # never create an empty store by asking what is in it
        raise ConfigError(f"{cfg.path}: storage.path: no event store at {path} "
                          f"(has the daemon run with this config?)")
    try:
        store = EventStore.from_config(cfg.storage)
    except UserError as exc:  # not SQLite, or unreadable: say which key led there
        raise ConfigError(f"{cfg.path}: storage.path: {exc}") from None
    try:
        rows = store.query(args.camera, since, args.limit)
    finally:
        store.close()
    for e in rows:
        after = e.payload.get("after", {})
        when = dt.datetime.fromtimestamp(e.wall_time).isoformat(timespec="seconds")
        print(json.dumps({"seq": e.seq, "time": when, "camera": e.camera, "type": e.type,
                          "id": e.event_id, "peak_score": after.get("peak_score"),
                          "box": after.get("box"), "snapshot": after.get("snapshot"),
                          "published": e.published}))
    return 0


def _sign(args: argparse.Namespace) -> int:
    """Re-seal a model directory whose files were changed on purpose; the schema still applies."""
    from stream_detector.model.manifest import sign
    from stream_detector.model.runtime import load

    sign(args.model)
    load(args.model, "cpu")  # a sealed directory that would not load is no use: say so now
    print(f"signed {args.model}")
    return 0
