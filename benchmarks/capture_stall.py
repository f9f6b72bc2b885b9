"""Bad cameras beside good ones: do the good cameras' scored frames ever pause, and how fast does
the daemon stop while the bad ones are opening? Once per capture backend.

    python benchmarks/capture_stall.py --seconds 40 --backends ffmpeg,opencv --json stall.json

Runs `python -m stream_detector run` with four cameras: `good_net` (an HTTP Motion-JPEG camera
served by this script, 10 frames/s), `good_file` (a 3 s clip of vtest.avi, looped: a reopen at
every pass), `bad_garbage` (a TCP port that sends random bytes) and `bad_silent` (a port that
accepts and never answers). The network cameras use `capture = BACKEND`. /metrics is read every
0.1 s; for each good camera the longest time without a newly scored frame is reported, then
SIGTERM is sent and the time to the daemon's exit measured (the bad cameras keep reopening, so
one is usually mid-open). The daemon's child processes (a reader per network connection) and
their memory (PSS) are read just before.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from capacity import VTEST, Daemon, HarnessError, child_env

GOOD = ("good_net", "good_file")


@dataclass
class Figures:
    backend: str
    seconds: float
    max_gap_s: dict[str, float] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    sigterm_exit_s: float = 0.0
    log_lines: int = 0
    children: int = 0  # the daemon's child processes (readers) just before SIGTERM
    children_pss_mb: float = 0.0  # their proportional set size together


class Cameras:
    """The fake cameras: a Motion-JPEG server, a garbage sender and a silent listener."""

    def __init__(self, source: Path) -> None:
        cap = cv2.VideoCapture(str(source))
        self.jpegs = []
        while len(self.jpegs) < 100 and (frame := cap.read()[1]) is not None:
            self.jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
        cap.release()
        jpegs = self.jpegs

        class Mjpeg(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                start, i = time.monotonic(), 0
                try:
                    while True:
                        jpg = jpegs[i % len(jpegs)]
                        self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         b"%d\r\n\r\n%s\r\n" % (len(jpg), jpg))
                        i += 1
                        time.sleep(max(0.0, start + i / 10 - time.monotonic()))
                except OSError:
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.mjpeg = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Mjpeg)
        self.mjpeg.daemon_threads = True
        self.garbage = socket.create_server(("127.0.0.1", 0))
        self.silent = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        for target in (self.mjpeg.serve_forever, self._garbage, self._silent):
            threading.Thread(target=target, daemon=True).start()

    def url(self, which: str) -> str:
        sock = {"mjpeg": self.mjpeg.socket, "garbage": self.garbage, "silent": self.silent}[which]
        port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/video.mjpg" if which == "mjpeg" else f"rtsp://127.0.0.1:{port}/live"

    def _garbage(self) -> None:
        rng = np.random.default_rng(1)
        while True:
            try:
                conn, _ = self.garbage.accept()
            except OSError:
                return

            def spray(c: socket.socket = conn) -> None:
                try:
                    while True:
                        c.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                        time.sleep(0.01)
                except OSError:
                    c.close()
            threading.Thread(target=spray, daemon=True).start()

    def _silent(self) -> None:
        while True:
            try:
                self._held.append(self.silent.accept()[0])
            except OSError:
                return


def run(backend: str, args: argparse.Namespace, workdir: Path, cams: Cameras, clip: Path) -> Figures:
    config = workdir / f"stall-{backend}.toml"
    lines = ["[metrics]", 'host = "127.0.0.1"', "port = 0",
             "[storage]", f"path = {json.dumps(str(workdir / ('store-' + backend)))}",
             "[cameras.good_file]", f"source = {json.dumps(str(clip))}", "loop = true"]
    for name, which in (("good_net", "mjpeg"), ("bad_garbage", "garbage"), ("bad_silent", "silent")):
        lines += [f"[cameras.{name}]", f'source = "{cams.url(which)}"', f'capture = "{backend}"']
    config.write_text("\n".join(lines) + "\n")
    log = workdir / f"daemon-{backend}.log"
    daemon = Daemon(config, log, child_env())
    figures = Figures(backend, args.seconds)
    try:
        daemon.wait_metrics(120)
        time.sleep(args.warmup)
        last: dict[str, tuple[float, float]] = {}
        gaps = dict.fromkeys(GOOD, 0.0)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            now = time.monotonic()
            for labels, value in daemon.scrape().get("stream_detector_frames_scored_total", []):
                cam = labels.get("camera", "")
                if cam not in gaps:
                    continue
                if cam not in last or value > last[cam][1]:
                    if cam in last:
                        gaps[cam] = max(gaps[cam], now - last[cam][0])
                    last[cam] = (now, value)
            time.sleep(0.1)
        for cam in GOOD:  # a camera still paused at the end counts too
            if cam in last:
                gaps[cam] = max(gaps[cam], time.monotonic() - last[cam][0])
        figures.max_gap_s = {cam: round(gap, 2) for cam, gap in gaps.items()}
        figures.scored = {cam: int(last.get(cam, (0, 0))[1]) for cam in GOOD}
        daemon.check_running("during the run")
        figures.children = len(daemon.children_cpu_seconds())
        figures.children_pss_mb = round(daemon.children_pss_mb(), 1)
        start = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"still running 30 s after SIGTERM{daemon.tail()}") from None
        figures.sigterm_exit_s = round(time.monotonic() - start, 2)
        figures.log_lines = len(log.read_text(errors="replace").splitlines())
    finally:
        daemon.kill()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--backends", default="ffmpeg,opencv")
    parser.add_argument("--source", type=Path, default=VTEST)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        clip = workdir / "loop.avi"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(args.source), "-t", "3",
                        "-c:v", "mjpeg", "-q:v", "5", str(clip)], check=True)
        cams = Cameras(args.source)
        try:
            for backend in args.backends.split(","):
                figures = run(backend, args, workdir, cams, clip)
                print(json.dumps(asdict(figures)), flush=True)
                results.append(asdict(figures))
        except HarnessError as exc:
            print(f"capture_stall: {exc}", file=sys.stderr)
            return 1
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
