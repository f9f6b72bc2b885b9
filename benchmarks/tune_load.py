"""What a scheduled tune costs the cameras: the real daemon with N cameras (the capacity harness's
input and config) and [tune] enabled, its store holding K false alarms of camera c1 with clips
(vtest with a bright disc); measured as an operator sees it before, during and after the tune.

    python benchmarks/tune_load.py --cameras 4 --clips 2 --window 20 --workdir runs/tune-load

Phases: `before` (--window s once warmed up), `tuning` (from the log's "tuning with" to "tuned
in": the child running at nice 10 with one torch thread), `after` (--window s with c1 on its tuned
version, which no longer shares model calls with the others). Each: frames expected, scored and
dropped, capture-to-score latency p50/p99 (bucket bounds), the daemon's CPU and the tune child's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import cv2
from capacity import (
    METRIC,
    VTEST,
    Daemon,
    HarnessError,
    child_env,
    encode_input,
    latency_buckets,
    parser as capacity_parser,
    quantile,
    scored_rate,
    seconds_le,
    total,
    write_config,
)

from stream_detector.capture import Injection, video_info
from stream_detector.messages import Event
from stream_detector.outputs import EventStore, Reviews, event_payload


def false_alarm_clip(out: Path, frames: int) -> Path:
    """vtest at 480x360, 10 frames/s, with a disc bouncing from the 10th frame."""
    cap = cv2.VideoCapture(str(VTEST))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (480, 360))
    disc = Injection(10, frames)
    for i in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(disc.apply(frame, i), (480, 360), interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return out


def seed_store(storage: Path, clips: int, frames: int) -> None:
    """`clips` ended events of camera c1, each with its clip, marked false_alarm."""
    storage.mkdir(parents=True, exist_ok=True)
    store = EventStore(storage / "events.sqlite")
    try:
        for n in range(clips):
            clip = false_alarm_clip(storage / f"fa{n}.avi", frames)
            wall = time.time() - 3600 + 60 * n
            for kind, end in (("start", None), ("end", wall + frames / 10)):
                ev = Event(f"fa{n}", "c1", kind, wall, 0.0, end, end, 30.0, 1, None, 2.0)
                store.append(ev, event_payload(ev, None, host="bench", clip=str(clip) if end else None,
                                               clip_start=wall if end else None))
            Reviews(store).set(f"fa{n}", "false_alarm", "bench")
    finally:
        store.close()


def phase(name: str, daemon: Daemon, m0: dict[str, Any], c0: float, k0: float,
          t0: float, cameras: int, paced: float) -> dict[str, Any]:
    m1, c1, k1, t1 = snapshot(daemon)
    elapsed = t1 - t0
    buckets = latency_buckets(m0, m1)

    def delta(counter: str) -> float:
        return total(m1, METRIC + counter) - total(m0, METRIC + counter)

    return {"phase": name, "seconds": round(elapsed, 1), "expected": round(cameras * paced * elapsed),
            "scored": delta("frames_scored_total"), "dropped": delta("frames_dropped_total"),
            "p50_le_s": quantile(buckets, 0.5), "p99_le_s": quantile(buckets, 0.99),
            "daemon_cpu_percent": round((c1 - c0) / elapsed * 100, 1),
            "tune_child_cpu_percent": round((k1 - k0) / elapsed * 100, 1)}


def waited_children_cpu(pid: int) -> float:
    """CPU seconds of the process's children that ended and were waited for (the tune child; the
    ffmpeg recorders run on): cutime + cstime from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def snapshot(daemon: Daemon) -> tuple[dict[str, Any], float, float, float]:
    return (daemon.scrape(), daemon.cpu_seconds(), waited_children_cpu(daemon.proc.pid),
            time.monotonic())


def wait_log(daemon: Daemon, words: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while words not in daemon.log_path.read_text(errors="replace"):
        daemon.check_running(f"waiting for {words!r}")
        if time.monotonic() > deadline:
            raise HarnessError(f"no {words!r} in the log within {timeout:g} s{daemon.tail()}")
        time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--clips", type=int, default=2, help="false alarms to learn (default 2)")
    p.add_argument("--clip-frames", type=int, default=700, help="frames per clip (default 700)")
    p.add_argument("--window", type=float, default=20.0, help="seconds of `before` and `after`")
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cap = capacity_parser().parse_args(["--cameras", str(args.cameras), "--no-bench"])
    cap.camera_key = {}
    started = datetime.datetime.now().astimezone()
    try:
        video = encode_input(cap, workdir)
        fps = video_info(video).fps or cap.fps
        paced = scored_rate(cap, fps)
        folder = workdir / "daemon"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        seed_store(folder / "var", args.clips, args.clip_frames)
        config = write_config(folder / "config.toml", video, args.cameras, folder / "var", cap)
        # The first look for verdicts comes after the warm-up and the `before` window.
        with open(config, "a") as fh:
            fh.write(f"[tune]\nenabled = true\ninterval = {args.warmup + args.window + 5:g}\n")
        daemon = Daemon(config, folder / "daemon.log", child_env())
        rows = []
        try:
            daemon.wait_metrics(120)
            time.sleep(args.warmup)
            s = snapshot(daemon)
            time.sleep(args.window)
            rows.append(phase("before", daemon, *s, args.cameras, paced))
            wait_log(daemon, "tuning with", 120)
            s = snapshot(daemon)
            wait_log(daemon, "tuned in", 1800)
            rows.append(phase("tuning", daemon, *s, args.cameras, paced))
            s = snapshot(daemon)
            time.sleep(args.window)
            rows.append(phase("after", daemon, *s, args.cameras, paced))
            daemon.stop(30)
        finally:
            daemon.kill()
    except HarnessError as exc:
        print(f"tune_load: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.cameras} cameras of {video.name} ({paced:g} frames/s scored each), "
          f"{args.clips} false alarm clip(s) of {args.clip_frames} frames; {os.cpu_count()} cores; "
          f"{started:%Y-%m-%d %H:%M %Z}\n")
    print("| phase | seconds | frames expected | scored | dropped | latency p50 | p99 | daemon CPU | tune child CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['phase']} | {r['seconds']} | {r['expected']} | {r['scored']:.0f} | "
              f"{r['dropped']:.0f} | {seconds_le(r['p50_le_s'])} | {seconds_le(r['p99_le_s'])} | "
              f"{r['daemon_cpu_percent']} % | {r['tune_child_cpu_percent']} % |")
    if args.json:
        args.json.write_text(json.dumps({"date": started.isoformat(timespec="seconds"),
                                         "argv": sys.argv[1:], "phases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
