"""Command line: fit, record, score, eval, bench, run, check-config, events, sign, tune.

Exit codes: 0 ok, 2 bad input (one line on stderr, arguments included), 130 interrupted.
"""
# This docstring is `--help`'s text. The module parses, hands the work to the stage that owns it
# and prints; it holds no domain logic.

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import stream_detector.daemon as daemon  # torch-free until the app is used: config errors are fast
from stream_detector import __version__
from stream_detector.capture import redact, scored_config, source_kind
from stream_detector.config import (
    CAMERA_NAME_CHARS,
    DEFAULT_MODEL,
    CameraConfig,
    load_detector_config,
)
from stream_detector.arguments import UNITS, count, duration, positive
from stream_detector.errors import SourceError, UserError
from stream_detector.outputs import EVENT_ID, stored_events

if TYPE_CHECKING:
    from stream_detector.offline import Window

# Handlers import offline/ and model/ when they run: both import torch (seconds to load), which a
# bad argument or config must not wait for.


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

    f = sub.add_parser("fit", help="learn a scene's normal behaviour from normal footage: files, or "
                       "a live camera recorded first")
    f.add_argument("--source", action="append", help="video file or folder (repeatable), or one "
                   "camera URL or USB device (recorded for --duration)")
    f.add_argument("--camera", help="a camera of --config (its scored stream, capture, credentials),"
                   " recorded for --duration; with --split --source FOOTAGE: whose rules split it")
    f.add_argument("--out", required=True, type=Path, help="model directory (--split: a folder)")
    f.add_argument("--config", type=Path, help="TOML file with a [detector] table (with --camera: "
                   "the daemon's config)")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    f.add_argument("--epochs", type=count(0), help="training epochs (default from config)")
    _recording_arguments(f)
    f.add_argument("--keep-footage", type=Path, help="keep the recorded footage in this folder")
    f.add_argument("--split", action="store_true", help="one model per entry of the camera's "
                   "`models`, each fitted on the footage its rule (picture, hours) selects")
    f.set_defaults(handler=_fit)

    rec = sub.add_parser("record", help="record a live camera's normal footage for fit, over a span")
    rec.add_argument("--source", help="camera URL or USB device")
    rec.add_argument("--camera", help="a camera of --config (its scored stream and credentials)")
    rec.add_argument("--config", type=Path, help="the daemon's config, with --camera")
    rec.add_argument("--out", required=True, type=Path, help="folder for the footage files")
    _recording_arguments(rec)
    rec.set_defaults(handler=_record)

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
    e.add_argument("--false-alarms-per-hour", type=positive, default=1.0)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.set_defaults(handler=_eval)

    b = sub.add_parser("bench", help="frames/s of decode, model and full pipeline on one video")
    b.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    b.add_argument("--source", type=Path, help="video file (default: OpenCV's vtest.avi)")
    b.add_argument("--frames", type=count(1), default=400)
    b.add_argument("--batch", type=count(1), default=8, help="windows per model call (8 fits CPU caches best)")
    b.add_argument("--threads", type=count(0), default=0,
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
    c.add_argument("--timeout", type=positive, default=20.0,
                   help="seconds each probe may take to deliver a frame")
    c.set_defaults(handler=_check_config)

    v = sub.add_parser("events", help="list stored events")
    v.add_argument("--config", type=Path, help="config whose storage to read (default: embedded default)")
    v.add_argument("--camera")
    v.add_argument("--since", help="epoch seconds, ISO time (2026-11-25T10:00) or an age: 30m, 2h, 1d")
    v.add_argument("--limit", type=count(1), default=1000)
    v.set_defaults(handler=_events)

    t = sub.add_parser("tune", help="a new model that treats the clips of events marked false_alarm "
                                    "as normal (the old one stays for rollback)")
    t.add_argument("--model", type=Path, required=True, help="model directory to start from")
    t.add_argument("--store", type=Path, required=True,
                   help="the daemon's storage.path (or its events.sqlite)")
    t.add_argument("--out", type=Path, required=True, help="new model directory to write")
    t.add_argument("--camera", action="append", default=[],
                   help="only this camera's false alarms (repeatable; default: all)")
    t.add_argument("--event", action="append", default=[],
                   help="only this event's clip (an id; repeatable; default: every false alarm)")
    t.add_argument("--false-alarms-per-hour", type=positive, default=1.0,
                   help="the camera's false_alarms_per_hour: the threshold --widen fired aims under")
    t.add_argument("--widen", choices=["everywhere", "fired"], default="everywhere",
                   help="everywhere (default): every cue of every cell holds the false alarms; "
                        "fired: only what carried them over the threshold")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.set_defaults(handler=_tune)

    g = sub.add_parser("sign", help="re-seal a model directory after a deliberate edit (model card)")
    g.add_argument("model", type=Path)
    g.set_defaults(handler=_sign)
    return p


def _recording_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=duration, help="span to record over, footage spread over all "
                   "of it: 90s, 20m, 2h, 1d")
    p.add_argument("--every", type=duration, help="record --take at the start of every this long")
    p.add_argument("--take", type=duration, help="seconds recorded each --every")
    p.add_argument("--fps", type=positive, help="frames per second kept (default: the camera's "
                   "fps_limit, else 10): the rate the model is fitted at and the daemon scores at")


def _fit(args: argparse.Namespace) -> int:
    from stream_detector.model import pick_device
    from stream_detector.offline import fit_from_camera, fit_models, split_models

    camera = _live_camera(args, "fit", split=args.split)
    where = f"{args.config}: cameras.{args.camera}"
    split = split_models(camera[1], where) if args.split and camera else ()
    if args.keep_footage is not None and args.keep_footage.is_file():
        raise _ArgumentError(f"fit: --keep-footage: {args.keep_footage} is a file")
    cfg = load_detector_config(args.config, {"epochs": args.epochs})
    device = pick_device(args.device)
    if camera is None or (args.camera is not None and args.source):  # files, or footage to split
        results = fit_models(args.source, args.out, cfg, device, split, where)
    else:
        fps, windows = _plan(args, camera[1], cfg.max_train_frames)
        recording, results = fit_from_camera(camera[1], camera[0], windows, fps, args.out, cfg,
                                             device, args.keep_footage, split, where)
        print(recording.summary(args.keep_footage))
    for model, report in results:
        print(f"wrote {report.out_dir}{f' (model {model})' if model else ''} ({report.frames} "
              f"frames, {report.seconds:.0f}s, final loss {report.final_loss:.5f}, threshold at 1 "
              f"false alarm/h: {report.threshold_1_per_hour:.2f})")
    return 0


def _record(args: argparse.Namespace) -> int:
    from stream_detector.offline import record

    if args.source is not None and source_kind(args.source) == "file":
        raise _ArgumentError("record: --source must be a camera URL or USB device, not a file")
    camera = _live_camera(args, "record")
    assert camera is not None  # a live --source or --camera, or _live_camera said why not
    if args.out.is_file():
        raise _ArgumentError(f"record: --out: {args.out} is a file")
    fps, windows = _plan(args, camera[1], None)
    print(record(camera[1], camera[0], args.out, windows, fps).summary(args.out))
    return 0


def _live_camera(args: argparse.Namespace, command: str,
                 split: bool = False) -> tuple[str, CameraConfig] | None:
    """The camera to record (name, its scored stream as CameraConfig), or None for files; the
    arguments checked together first, each misuse one line."""
    sources = [args.source] if isinstance(args.source, str) else (args.source or [])
    live = [s for s in sources if source_kind(s) != "file"]
    if split and args.camera is None:
        raise _ArgumentError("fit: --split needs --camera NAME and --config FILE: the camera's "
                             "models and their rules split the footage")
    if args.camera is not None:
        if args.config is None:
            raise _ArgumentError(f"{command}: --camera needs --config FILE (the daemon's config)")
        if sources and not (split and not live):
            hint = " (but --split --camera NAME --source FOOTAGE splits footage)"
            raise _ArgumentError(f"{command}: give --source or --camera, not both"
                                 f"{hint if command == 'fit' else ''}")
        cfg = daemon.load_config(args.config, environment=False)  # the daemon may hold its port
        if args.camera not in cfg.cameras:
            raise UserError(f"{args.config}: cameras.{args.camera}: no such camera (enabled: "
                            f"{', '.join(cfg.cameras)})")
        camera: tuple[str, CameraConfig] | None = (args.camera, scored_config(cfg.cameras[args.camera]))
    elif not sources:
        what = "files, a folder or a camera URL" if command == "fit" else "a camera URL"
        raise _ArgumentError(f"{command}: give --source ({what}) or --camera NAME with --config FILE")
    elif live and len(sources) > 1:
        raise _ArgumentError(f"{command}: --source {redact(live[0])}: record one camera at a "
                             f"time, without files beside it")
    else:
        camera = ("camera", CameraConfig(source=sources[0])) if live else None
    recording = camera is not None and (args.camera is None or not sources)  # not --split's footage
    options = [o for o in ("duration", "every", "take", "fps") if getattr(args, o) is not None]
    if not recording and (options or getattr(args, "keep_footage", None)):
        raise _ArgumentError(f"{command}: --{(options or ['keep-footage'])[0]} is for recording "
                             f"a live camera (--source URL or --camera NAME)")
    if recording and args.duration is None:
        raise _ArgumentError(f"{command}: a live camera needs --duration, the span to record over "
                             f"(e.g. 20m)")
    return camera


def _plan(args: argparse.Namespace, cam: CameraConfig,
          budget: int | None) -> tuple[float, list[Window]]:
    """The rate to record at and when (every window of `budget` frames at most, when set)."""
    from stream_detector.offline import plan_windows, recording_rate

    fps = recording_rate(args.fps, cam)
    return fps, plan_windows(args.duration, fps, budget or 10**12, args.every, args.take)


def _score(args: argparse.Namespace) -> int:
    from stream_detector.offline import score_file

    n, top = score_file(args.model, args.source, args.out, args.maps, args.device)
    print(f"wrote {args.out} ({n} frames, max score {top:.2f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from stream_detector.offline import evaluate

    report = evaluate(args.model, args.data, args.report, args.false_alarms_per_hour, args.device)
    result, operator, out = report.result, report.operator, report.out
    print(f"frames {result.frames} ({result.anomalous_frames} anomalous) in {report.clips} clips")
    print(f"frame-level micro AUC, causal scores:               {result.auc_causal:.4f}")
    print(f"frame-level micro AUC, literature protocol (per-clip min-max + Gaussian sigma 3, "
          f"not causal): {result.auc_literature:.4f}")
    print(f"threshold for {args.false_alarms_per_hour:g} false alarm(s)/h: {report.threshold:.3f} -> "
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
    import torch

    from stream_detector.offline import bench

    model, results = bench(args.model, args.source, args.frames, args.batch, args.threads,
                           args.device)
    w, h = model.metadata["working_size"]
    print(f"model {args.model} at {w}x{h}, window {model.slicer.window}, device {model.device}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    decode = results[0].fps
    for r in results:
        print(f"{r.name:42s} {r.fps:8.1f} frames/s  ({r.frames} frames in {r.seconds:.2f}s, "
              f"{r.fps / decode:.2f}x decode)")
    return 0


def _run(args: argparse.Namespace) -> int:
    cfg = daemon.load_config(args.config)  # before the daemon's app imports torch
    return daemon.run(cfg, args.config)


def _check_config(args: argparse.Namespace) -> int:
    """Everything `run` checks before it starts, nothing started; --probe also reads each camera."""
    cfg = daemon.load_config(args.config)  # before the models import torch, as in _run
    for warning in daemon.secret_warnings(cfg):
        print(f"stream-detector: warning: {warning}", file=sys.stderr)
    cfg = daemon.tuned_config(cfg)  # the models the daemon would score with
    models = daemon.check_cameras(cfg, cfg.device, cfg.inference.precision)
    failed = []
    pictures: dict[str, str | None] = {}
    for name, probed in daemon.probe_cameras(cfg, models, args.timeout) if args.probe else ():
        if isinstance(probed, SourceError):
            print(f"camera {name}: FAILED: {probed}")
            failed.append((name, probed))
        else:
            pictures[name] = probed.picture
            print(f"camera {name}: ok, {probed.width}x{probed.height} frames")
    if failed:
        raise daemon.probe_failed(cfg, failed)
    for line in daemon.active_models(cfg, pictures) + daemon.tuned_models(cfg):
        print(line)
    print(f"{args.config}: ok ({len(cfg.cameras)} camera(s): {', '.join(cfg.cameras)}"
          f"{', each delivered a frame' if args.probe else ''})")
    return 0


def _parse_since(text: str) -> float:
    try:
        if text[-1:] in UNITS and text[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(text[:-1]) * UNITS[text[-1]]
        if text.replace(".", "", 1).isdigit():
            return float(text)
        stamp = dt.datetime.fromisoformat(text)
        return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise UserError(f"--since {text!r}: expected epoch seconds, an ISO time or an age like 2h") from None


def _events(args: argparse.Namespace) -> int:
    cfg = daemon.load_config(args.config, environment=False)  # the daemon may hold the port
    since = _parse_since(args.since) if args.since else None
    if args.camera is not None and not (args.camera and set(args.camera) <= CAMERA_NAME_CHARS):
        raise UserError(f"--camera {args.camera!r}: camera names use letters, digits, '_' and '-' only")
    for e, verdict in stored_events(cfg.storage, cfg.path, args.camera, since, args.limit):
        after = e.payload.get("after", {})
        when = dt.datetime.fromtimestamp(e.wall_time).isoformat(timespec="seconds")
        print(json.dumps({"seq": e.seq, "time": when, "camera": e.camera, "type": e.type,
                          "id": e.event_id, "peak_score": after.get("peak_score"),
                          "box": after.get("box"), "snapshot": after.get("snapshot"),
                          "clip": after.get("clip"), "verdict": verdict,
                          "published": e.published}))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from stream_detector.offline import tune

    for name in args.camera:
        if not (name and set(name) <= CAMERA_NAME_CHARS):
            raise UserError(f"--camera {name!r}: camera names use letters, digits, '_' and '-' only")
    if args.out.resolve() == args.model.resolve():
        raise UserError("--out: must be a new directory, not --model (it stays for rollback)")
    for event in args.event:
        if not EVENT_ID.fullmatch(event):
            raise UserError(f"--event {event!r}: an event id is 1-64 letters, digits, '_' or '-'")
    report = tune(args.model, args.store, args.out, args.camera, args.device, events=args.event,
                  false_alarms_per_hour=args.false_alarms_per_hour, widen=args.widen)
    print(f"wrote {report.out_dir}: {len(report.events)} false alarm(s), {report.frames} frames; "
          f"{report.cells_widened} (cue, cell) baselines widened (x{report.scale_growth:.2f} on "
          f"average)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    """Re-seal a model directory whose files were changed on purpose; the schema still applies."""
    from stream_detector.model import load, sign

    sign(args.model)
    load(args.model, "cpu")  # a sealed directory that would not load is no use: say so now
    print(f"signed {args.model}")
    return 0
