"""Capacity harness: the real daemon with N cameras on one generated H.264 file, measured as an
operator sees it, plus the single-stream `bench` figure on the same input.

    python benchmarks/capacity.py --cameras 1,4,8 --size 768x576 --fps 25 --window 30
    python benchmarks/capacity.py --cameras 1,2 --workdir runs/capacity --json runs/capacity.json

For each N it writes a config with N cameras on the same file (looped, paced at its frame rate, no
broker, metrics on a free loopback port), starts `python -m stream_detector run --config FILE`,
waits --warmup seconds after /metrics answers, then reads /metrics and /proc twice, --window seconds
apart: frames read / scored / dropped, capture-to-score latency p50 / p99 (the daemon's histogram,
so bucket upper bounds: "<="), process CPU and RSS, and its child processes' CPU and PSS apart (the
ffmpeg readers of `--camera-key 'capture="ffmpeg"'`). One line per N as soon as it is measured, a
markdown table at the end. The daemon is stopped with SIGINT; one that exits early, never serves
/metrics or does not stop cleanly is an error, shown with the tail of its log.

The daemon child runs the same stream_detector package as this script (its folder is put first on
PYTHONPATH), so a checkout measures its own code whatever is installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import stream_detector
from stream_detector.capture import video_info
from stream_detector.config import DEFAULT_MODEL, load_daemon_config
from stream_detector.errors import UserError
from stream_detector.model import read_metadata

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian's opencv-doc
PACKAGE_ROOT = Path(stream_detector.__file__).resolve().parent.parent
METRIC = "stream_detector_"
SERVING = re.compile(r"metrics: serving http://([^:/\s]+):(\d+)/metrics")
BENCH_LINE = re.compile(r"^(?P<name>.+?)\s+(?P<fps>[\d.]+) frames/s\s+\((?P<frames>\d+) frames in "
                        r"(?P<seconds>[\d.]+)s")


class HarnessError(Exception):
    """A failed step; main prints it as one message (a daemon's log tail included) and exits 1."""


# --- inputs ---------------------------------------------------------------------------------------


def encode_input(args: argparse.Namespace, workdir: Path) -> Path:
    """The H.264 file every camera and `bench` read, cached in `workdir` under a name that holds
    every setting, and written under a temporary name first so an interrupted encode is not kept."""
    width, height = args.size
    src = args.source
    gop = args.gop or max(1, round(2 * args.fps))
    name = (f"{src.stem}-{width}x{height}-{args.fps:g}fps-{args.retime}-{args.bitrate}-g{gop}"
            f"-{args.seconds:g}s.mp4")
    out = workdir / name
    if out.is_file():
        return out
    if shutil.which("ffmpeg") is None:
        raise HarnessError("ffmpeg not found: install it (Debian: apt-get install ffmpeg; "
                           "./dev setup does)")
    try:
        info = video_info(src)
    except UserError as exc:
        raise HarnessError(str(exc)) from None
    if not info.fps or not info.frames:
        raise HarnessError(f"{src}: frame rate or frame count unknown; cannot plan the encode")
    if args.retime == "fps":  # real time kept: frames repeated (or skipped) to reach --fps
        vf, clip_seconds = f"scale={width}:{height},fps={args.fps:g}", info.frames / info.fps
    else:  # every source frame once, played at --fps: the clip runs faster or slower
        vf = f"scale={width}:{height},setpts={info.fps / args.fps:.6g}*PTS,fps={args.fps:g}"
        clip_seconds = info.frames / args.fps
    loops = max(0, math.ceil(args.seconds / clip_seconds) - 1)
    tmp = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-stream_loop", str(loops), "-i", str(src), "-vf", vf, "-t", f"{args.seconds:g}",
           "-c:v", "libx264", "-b:v", args.bitrate, "-g", str(gop),
           "-pix_fmt", "yuv420p", "-an", str(tmp)]
    print(f"encoding {out.name}: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"ffmpeg failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    tmp.replace(out)
    return out


# --- the daemon -----------------------------------------------------------------------------------


def write_config(path: Path, video: Path, cameras: int, storage: Path,
                 args: argparse.Namespace) -> Path:
    """N identical cameras; --camera-key literals last, so they can override anything. Checked with
    the daemon's own loader so a bad key fails here in one line, not after torch has loaded."""
    keys = {"source": json.dumps(str(video)), "loop": "true"}  # JSON strings are TOML strings
    if args.fps_limit is not None:
        keys["fps_limit"] = repr(args.fps_limit)
    keys.update(args.camera_key)
    lines = [f'device = "{args.device}"',
             *(["[inference]", f"torch_threads = {args.torch_threads}"] if args.torch_threads else []),
             "[metrics]", 'host = "127.0.0.1"', "port = 0",  # 0: the daemon picks and logs a port
             "[storage]", f"path = {json.dumps(str(storage))}"]
    for i in range(1, cameras + 1):
        lines += [f"[cameras.c{i}]", *(f"{k} = {v}" for k, v in keys.items())]
    path.write_text("\n".join(lines) + "\n")
    try:
        load_daemon_config(path)
    except UserError as exc:
        raise HarnessError(f"config rejected: {exc}") from None
    return path


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


class Daemon:
    """`python -m stream_detector run` as a child; its log in a file, its /metrics on loopback."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.log_path = log
        self.url = ""
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_detector", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=err, env=env)

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace")
        return (f"\n--- daemon log ({self.log_path.name}), last {chars} characters ---\n"
                f"{text[-chars:]}")

    def check_running(self, what: str) -> None:
        rc = self.proc.poll()
        if rc is not None:
            raise HarnessError(f"the daemon exited with {rc} {what}{self.tail()}")

    def wait_metrics(self, timeout: float) -> None:
        """Until the log names the metrics port and /metrics answers there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running("before serving /metrics")
            if not self.url and (m := SERVING.search(self.log_path.read_text(errors="replace"))):
                self.url = f"http://{m.group(1)}:{m.group(2)}/metrics"
            if self.url:
                try:
                    self.scrape()
                    return
                except HarnessError:
                    pass
            time.sleep(0.2)
        raise HarnessError(f"the daemon did not serve /metrics within {timeout:g} s{self.tail()}")

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Every stream_detector_ sample: name -> [(labels, value)]."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                body = resp.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise HarnessError(f"cannot read {self.url}: {exc}{self.tail()}") from None
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name.startswith(METRIC):
                    samples.setdefault(s.name, []).append((s.labels, s.value))
        return samples

    def cpu_seconds(self) -> float:
        """utime + stime of every thread of the process, from /proc (Linux)."""
        return _cpu_seconds(self.proc.pid)

    def children_cpu_seconds(self) -> dict[int, float]:
        """The same for each running child (the ffmpeg capture processes), by pid."""
        out = {}
        for pid in _children(self.proc.pid):
            try:
                out[pid] = _cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
        return out

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise HarnessError("no VmRSS in /proc status")

    def children_pss_mb(self) -> float:
        """Proportional set size of the children together: shared library pages counted once
        (each ffmpeg's RSS counts libavcodec and its kin again)."""
        total = 0.0
        for pid in _children(self.proc.pid):
            try:
                lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            except OSError:
                continue  # exited meanwhile
            total += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:")) / 1024
        return total

    def stop(self, timeout: float) -> None:
        """SIGINT, as an operator's Ctrl-C; it must exit 0 within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"the daemon was still running {timeout:g} s after SIGINT (killed)"
                               f"{self.tail()}") from None
        if rc != 0:
            raise HarnessError(f"the daemon exited with {rc} after SIGINT{self.tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@dataclass
class Run:
    """One N's figures. Latency quantiles are histogram bucket upper bounds (seconds); None when
    nothing was scored or the quantile lies above the largest bucket."""
    cameras: int
    window_s: float
    expected_frames: float
    frames_read: float
    frames_scored: float
    frames_dropped: float
    latency_p50_le_s: float | None
    latency_p99_le_s: float | None
    cpu_percent: float
    cpu_of_percent: float
    rss_mb: float
    rss_per_extra_camera_mb: float | None = None
    # The daemon's child processes (ffmpeg capture), outside the figures above; 0 with OpenCV.
    children: int = 0
    children_cpu_percent: float = 0.0
    children_pss_mb: float = 0.0
    # Of those, the recorders for event clips (ffmpeg writing segments), and their ring on disk.
    recorders: int = 0
    recorders_cpu_percent: float = 0.0
    recordings_mb: float = 0.0


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def quantile(buckets: dict[float, float], p: float) -> float | None:
    """The smallest bucket bound holding at least `p` of the observations (cumulative counts)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    le = next(b for b in bounds if buckets[b] >= p * buckets[bounds[-1]])
    return None if math.isinf(le) else le


def latency_buckets(before: dict[str, list[tuple[dict[str, str], float]]],
                    after: dict[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
    """Cumulative bucket counts observed between two scrapes, summed over cameras."""
    name = METRIC + "scoring_latency_seconds_bucket"
    out: dict[float, float] = {}
    for sign, samples in ((-1.0, before), (1.0, after)):
        for labels, value in samples.get(name, []):
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + sign * value
    return out


def scored_rate(args: argparse.Namespace, fps: float) -> float:
    """Frames per second each camera should score: --fps-limit, else the model's fitted rate (what
    the daemon does when a camera sets no fps_limit); never more than the input has."""
    limit = args.fps_limit
    if limit is None:
        model = args.camera_key.get("model")
        meta = read_metadata(Path(tomllib.loads(f"v = {model}")["v"]) if model else DEFAULT_MODEL)
        limit = float(meta.get("fps") or 0.0)
    return min(fps, limit) if limit else fps


def _is_recorder(pid: int) -> bool:
    try:
        return b"segment" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6 \
        if folder.is_dir() else 0.0


def measure(daemon: Daemon, cameras: int, args: argparse.Namespace, fps: float,
            storage: Path | None = None) -> Run:
    time.sleep(args.warmup)
    daemon.check_running("during the warm-up")
    k0 = daemon.children_cpu_seconds()
    m0, c0, t0 = daemon.scrape(), daemon.cpu_seconds(), time.monotonic()
    deadline = t0 + args.window
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
        daemon.check_running("during the measurement window")
    m1, c1, t1 = daemon.scrape(), daemon.cpu_seconds(), time.monotonic()
    k1 = daemon.children_cpu_seconds()
    rss, children_pss = daemon.rss_mb(), daemon.children_pss_mb()
    # A child started in the window counts from its start; one that exited in it is not counted.
    children_cpu = sum(c - k0.get(pid, 0.0) for pid, c in k1.items())
    recorders = [pid for pid in k1 if _is_recorder(pid)]
    recorders_cpu = sum(k1[pid] - k0.get(pid, 0.0) for pid in recorders)
    elapsed = t1 - t0
    buckets = latency_buckets(m0, m1)
    paced = scored_rate(args, fps)

    def delta(counter: str) -> float:
        return total(m1, METRIC + counter) - total(m0, METRIC + counter)

    return Run(
        cameras=cameras, window_s=round(elapsed, 2),
        expected_frames=round(cameras * paced * elapsed),
        frames_read=delta("frames_read_total"), frames_scored=delta("frames_scored_total"),
        frames_dropped=delta("frames_dropped_total"),
        latency_p50_le_s=quantile(buckets, 0.50), latency_p99_le_s=quantile(buckets, 0.99),
        cpu_percent=round((c1 - c0) / elapsed * 100, 1),
        cpu_of_percent=100.0 * (os.cpu_count() or 1), rss_mb=round(rss, 1),
        children=len(k1), children_cpu_percent=round(children_cpu / elapsed * 100, 1),
        children_pss_mb=round(children_pss, 1), recorders=len(recorders),
        recorders_cpu_percent=round(recorders_cpu / elapsed * 100, 2),
        recordings_mb=round(_folder_mb(storage / "recordings") if storage else 0.0, 1))


def run_daemon(cameras: int, video: Path, workdir: Path, args: argparse.Namespace,
               fps: float) -> Run:
    folder = workdir / f"daemon-{cameras}"
    shutil.rmtree(folder, ignore_errors=True)  # a fresh event store each time
    folder.mkdir(parents=True)
    config = write_config(folder / "config.toml", video, cameras, folder / "var", args)
    env = child_env()
    daemon = Daemon(config, folder / "daemon.log", env)
    try:
        daemon.wait_metrics(args.start_timeout)
        run = measure(daemon, cameras, args, fps, folder / "var")
        daemon.stop(args.stop_timeout)
        return run
    finally:
        daemon.kill()


# --- bench ----------------------------------------------------------------------------------------


def run_bench(video: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`stream-detector bench` on the same file: each stage's frames/s, and the full pipeline's as a
    ratio of decode-only from that same run (ratios survive a noisy machine better than rates)."""
    cmd = [sys.executable, "-m", "stream_detector", "bench", "--source", str(video),
           "--frames", str(args.bench_frames), "--device", args.device]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), check=False)
    if done.returncode != 0:
        raise HarnessError(f"bench exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    stages = {m["name"]: float(m["fps"]) for line in done.stdout.splitlines()
              if (m := BENCH_LINE.match(line))}
    decode = stages.get("decode")
    full = next((v for k, v in stages.items() if k.startswith("full pipeline")), None)
    live = next((v for k, v in stages.items() if k.startswith("live path")), None)
    if not decode or full is None or live is None:
        raise HarnessError(f"bench output not understood:\n{done.stdout}")
    return {"command": ["stream-detector", *cmd[3:]], "output": done.stdout.splitlines(),
            "stages_fps": stages, "decode_fps": decode, "full_pipeline_fps": full,
            "full_over_decode": round(full / decode, 3), "live_path_fps": live,
            "live_over_decode": round(live / decode, 3)}


# --- output ---------------------------------------------------------------------------------------


def seconds_le(value: float | None) -> str:
    if value is None:
        return "-"  # nothing scored, or above the largest bucket
    return f"<= {value * 1000:,.0f} ms" if value < 1 else f"<= {value:g} s"


def progress_line(r: Run) -> str:
    extra = (f" ({r.rss_per_extra_camera_mb:+.0f} MB per extra camera)"
             if r.rss_per_extra_camera_mb is not None else "")
    return (f"cameras {r.cameras}: read {r.frames_read:,.0f} of {r.expected_frames:,.0f} expected, "
            f"scored {r.frames_scored:,.0f}, dropped {r.frames_dropped:,.0f} "
            f"in {r.window_s:.1f} s; "
            f"latency p50 {seconds_le(r.latency_p50_le_s)}, p99 {seconds_le(r.latency_p99_le_s)}; "
            f"CPU {r.cpu_percent:.0f} % (of {r.cpu_of_percent:.0f} %); "
            f"RSS {r.rss_mb:.0f} MB{extra}{children_text(r, '; ')}")


def children_text(r: Run, sep: str) -> str:
    """The ffmpeg children's share, when the daemon has any."""
    if not r.children:
        return ""
    recorders = (f", of which {r.recorders} recording for clips: CPU "
                 f"{r.recorders_cpu_percent:.1f} %, {r.recordings_mb:.1f} MB on disk"
                 if r.recorders else "")
    return (f"{sep}{r.children} child processes: CPU {r.children_cpu_percent:.0f} %, "
            f"PSS {r.children_pss_mb:.0f} MB{recorders}")


def table(runs: list[Run], fps: float, scored: float) -> str:
    rows = ["| cameras x fps (scored per camera) | expected | read | scored | dropped | latency p50 | latency p99 "
            "| process CPU | RSS | RSS per extra camera |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        extra = ("-" if r.rss_per_extra_camera_mb is None
                 else f"{r.rss_per_extra_camera_mb:+.0f} MB")
        rows.append(f"| {r.cameras} x {fps:g} ({scored:g}/s) | {r.expected_frames:,.0f} | {r.frames_read:,.0f} "
                    f"| {r.frames_scored:,.0f} | {r.frames_dropped:,.0f} "
                    f"| {seconds_le(r.latency_p50_le_s)} | {seconds_le(r.latency_p99_le_s)} "
                    f"| {r.cpu_percent:.0f} % of {r.cpu_of_percent:.0f} %"
                    f"{children_text(r, ' (+ ')}{')' if r.children else ''} "
                    f"| {r.rss_mb:.0f} MB | {extra} |")
    return "\n".join(rows)


# --- command line ---------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m[1]) < 32 or int(m[2]) < 32 or int(m[1]) % 2 or int(m[2]) % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, even numbers >= 32 "
                                         f"(H.264 4:2:0 needs even sizes)")
    return int(m[1]), int(m[2])


def _counts(text: str) -> list[int]:
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected camera counts like 1,4,8") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: camera counts must be >= 1")
    return counts


def _non_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


def _bitrate(text: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?[kKM]?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ffmpeg bitrate like 2M or 800k")
    return text


def _camera_key(text: str) -> tuple[str, str]:
    key, sep, literal = text.partition("=")
    key, literal = key.strip(), literal.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", key):
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. queue_size=32")
    try:
        tomllib.loads(f"v = {literal}")
    except tomllib.TOMLDecodeError:
        raise argparse.ArgumentTypeError(f"{text!r}: VALUE must be a TOML literal (strings quoted: "
                                         f"model=\"models/x\")") from None
    return key, literal


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("input (generated with ffmpeg, cached in --workdir)")
    g.add_argument("--source", type=Path, default=VTEST,
                   help="clip to re-encode (default: Debian opencv-doc's vtest.avi, 768x576, "
                        "10 fps, 795 frames)")
    g.add_argument("--size", type=_size, default=(768, 576), help="WIDTHxHEIGHT (default 768x576; "
                   "e.g. 384x288)")
    g.add_argument("--fps", type=_positive, default=25.0,
                   help="frame rate of the generated file and so of each camera (default 25)")
    g.add_argument("--retime", choices=["fps", "setpts"], default="fps",
                   help="how --fps is reached: 'fps' keeps real time, so from the 10 fps source "
                        "at 25 fps each frame appears 2-3 times (repeated frames are cheaper to "
                        "encode and decode than new ones); 'setpts' plays every source frame once "
                        "at --fps, i.e. 2.5x faster at 25 (the 25 fps figures of 2026-11-26 in "
                        "docs/benchmarks.md were taken this way). Default: fps")
    g.add_argument("--seconds", type=_positive, default=60.0,
                   help="length of the generated file; the clip is looped to reach it "
                        "(default 60; the daemon loops the file anyway)")
    g.add_argument("--bitrate", type=_bitrate, default="2M", help="libx264 bitrate (default 2M)")
    g.add_argument("--gop", type=int, help="frames from one keyframe to the next (default: 2 s)")
    g.add_argument("--workdir", type=Path,
                   help="folder for the generated files, configs, event stores and daemon logs, "
                        "kept (default: a temporary folder, removed at the end)")

    d = p.add_argument_group("daemon runs")
    d.add_argument("--cameras", type=_counts, default=[1, 4, 8],
                   help="camera counts to measure, comma-separated (default 1,4,8); with 1 in the "
                        "list, RSS per extra camera is reported against it")
    d.add_argument("--warmup", type=_positive, default=15.0,
                   help="seconds after /metrics first answers before the window opens (default 15)")
    d.add_argument("--window", type=_positive, default=30.0, help="seconds measured (default 30)")
    d.add_argument("--fps-limit", type=_non_negative,
                   help="camera key fps_limit: score at most this many frames/s per camera; 0 = "
                        "every frame (default: unset, the daemon scores at the model's fitted rate)")
    d.add_argument("--camera-key", type=_camera_key, action="append", default=[],
                   metavar="KEY=VALUE",
                   help="any other camera key, VALUE a TOML literal (repeatable; last one wins, "
                        "overrides the harness's own source/loop): --camera-key queue_size=32 "
                        "--camera-key 'model=\"models/x\"'")
    d.add_argument("--torch-threads", type=int,
                   help="the daemon's [inference] torch_threads (default: its auto, half the cores)")
    d.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="the daemon's device key and bench's --device (default auto, as both)")
    d.add_argument("--start-timeout", type=_positive, default=120.0,
                   help="seconds the daemon may take to serve /metrics (default 120)")
    d.add_argument("--stop-timeout", type=_positive, default=30.0,
                   help="seconds the daemon may take to exit after SIGINT (default 30)")

    b = p.add_argument_group("single-stream bench (stream-detector bench on the same file)")
    b.add_argument("--no-bench", action="store_true", help="skip it")
    b.add_argument("--bench-frames", type=int, default=400, help="bench --frames (default 400)")
    b.add_argument("--threads", type=int,
                   help="bench --threads: torch CPU threads (default: bench's)")

    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.camera_key = dict(args.camera_key)
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="capacity-")) if own_workdir else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return harness(args, workdir)
    except HarnessError as exc:
        print(f"capacity: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("capacity: interrupted", file=sys.stderr)
        return 130
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def harness(args: argparse.Namespace, workdir: Path) -> int:
    started = datetime.datetime.now().astimezone()
    video = encode_input(args, workdir)
    info = video_info(video)
    fps = info.fps or args.fps
    cores = os.cpu_count() or 1
    print(f"input {video.name}: {info.width}x{info.height}, {fps:g} frames/s, {info.frames} frames "
          f"(retime: {args.retime}); {cores} cores, {platform.machine()}; "
          f"{started:%Y-%m-%d %H:%M %Z}", flush=True)
    runs: list[Run] = []
    for n in args.cameras:
        run = run_daemon(n, video, workdir, args, fps)
        base = next((r for r in runs if r.cameras == 1), None)
        if base is not None and n > 1:
            run.rss_per_extra_camera_mb = round((run.rss_mb - base.rss_mb) / (n - 1), 1)
        runs.append(run)
        print(progress_line(run), flush=True)
    bench = None
    if not args.no_bench:
        bench = run_bench(video, args)
        print(" ".join(bench["command"]))
        print("\n".join("  " + line for line in bench["output"]))
        print(f"single stream, same run: live path (as the daemon runs a camera) "
              f"{bench['live_path_fps']:.1f} frames/s = {bench['live_over_decode']:.2f}x decode-only "
              f"({bench['decode_fps']:.1f} frames/s); every frame scored in one thread "
              f"{bench['full_pipeline_fps']:.1f} frames/s = {bench['full_over_decode']:.2f}x", flush=True)
    print()
    print(table(runs, fps, scored_rate(args, fps)))
    if args.json:
        doc = {"date": started.isoformat(timespec="seconds"), "argv": sys.argv[1:],
               "machine": {"cores": cores, "arch": platform.machine()},
               "input": {"file": video.name, "width": info.width, "height": info.height, "fps": fps,
                         "frames": info.frames, "retime": args.retime, "bitrate": args.bitrate},
               "daemon": {"camera_keys": {"loop": True, **({"fps_limit": args.fps_limit}
                                                           if args.fps_limit is not None else {}),
                                          **{k: tomllib.loads(f"v = {v}")["v"]
                                             for k, v in args.camera_key.items()}},
                          "torch_threads": args.torch_threads, "device": args.device,
                          "scored_per_camera_fps": scored_rate(args, fps)},
               "runs": [asdict(r) for r in runs], "bench": bench}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
