"""Writing a scene's kit: train clips, composited test clips, labels.json, scenarios.json and
previews; and the command line (`python benchmarks/scenarios.py`)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

from .compose import compose
from .plans import PLANNERS
from .scene import (FPS, PLACES, KitError, Scene, inputs, learn_background, learn_held,
                    learn_usage, load_scene, read_video)

CRF = 12
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
REPO = Path(__file__).resolve().parents[2]


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Encode near-lossless H.264 at 10 fps and check that it decodes to as many frames."""
    h, w = frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-framerate", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "medium",
           "-crf", str(CRF), "-g", str(FPS), "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    if proc.returncode:
        raise KitError(f"ffmpeg failed on {path}: {proc.stderr.decode(errors='replace')[-200:]}")
    decoded = len(read_video(path))
    assert decoded == len(frames), f"{path}: {decoded} frames decoded, {len(frames)} written"


def source_ranges(s: Scene, start: int, n: int) -> list[list]:
    """The held-out frames a clip uses, as [source clip, first frame, last frame] runs in order."""
    runs: list[list] = []
    for i in range(n):
        clip, f = s.held_src[(start + i) % len(s.held)]
        if runs and runs[-1][0] == clip and runs[-1][2] + 1 == f:
            runs[-1][2] = f
        else:
            runs.append([clip, f, f])
    return runs


def preview(path: Path, frames: list[np.ndarray], labels: list[int], boxes: list) -> None:
    """A contact sheet of 6 frames (before, in, after the anomalous span), inserted things boxed."""
    n, on = len(frames), np.nonzero(labels)[0]
    if len(on):
        a, b = on[0], on[-1]
        picks = [a // 2, a + 2, a + (b - a) // 3, a + 2 * (b - a) // 3, b, min(n - 1, (b + n) // 2)]
    else:
        picks = np.linspace(0, n - 1, 6).astype(int)
    w = frames[0].shape[1]
    z = 0.5 if w > 600 else 2.0 if w < 300 else 1.0
    tiles = []
    for i in picks:
        t = cv2.resize(frames[i], None, fx=z, fy=z,
                       interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_NEAREST)
        if boxes[i]:
            x0, y0, x1, y1 = (round(v * z) for v in boxes[i])
            cv2.rectangle(t, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), (0, 0, 255), 1)
        for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(t, f"frame {i}  label {labels[i]}", (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        color, width, cv2.LINE_AA)
        tiles.append(t)
    sheet = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])


def build_scene(s: Scene, out: Path, seed: int, types: list[str] | None = None) -> None:
    """Learn the scene, then write its train clips, test clips, labels, records and previews; of
    the scenario types, only `types` (None: all)."""
    rng = np.random.default_rng([seed, zlib.crc32(s.name.encode())])
    learn_background(s)
    learn_held(s)
    learn_usage(s)
    dst = out / s.name
    for sub in ("train", "test", "preview"):
        shutil.rmtree(dst / sub, ignore_errors=True)
        (dst / sub).mkdir(parents=True)
    for stem, frames in s.train:
        write_video(dst / "train" / f"{stem}.mp4", frames)
        print(f"{s.name}/train/{stem}.mp4: {len(frames)} frames (normal, for fit)", flush=True)
    labels, records = {}, {}
    for kind, planner in PLANNERS.items():
        s.used, s.taken = [], []  # the two clips of a type get different places and walkers
        for stem in (f"{kind}_1", f"{kind}_2"):
            plan = planner(s, rng)
            n, on = len(plan.labels), np.nonzero(plan.labels)[0]
            start = int(rng.integers(0, max(1, len(s.held) - n + 1)))  # loops only when needed
            if types is not None and kind not in types:
                continue  # planned all the same, so that the random draws of the others stay
            frames, boxes = compose(s, plan, start)
            assert len(frames) == len(boxes) == n
            write_video(dst / "test" / f"{stem}.mp4", frames)
            preview(dst / "preview" / f"{stem}.jpg", frames, plan.labels, boxes)
            labels[stem] = plan.labels
            records[stem] = {
                "type": kind, "frames": n, "anomalous_frames": len(on),
                "anomaly_first": int(on[0]) if len(on) else None,
                "anomaly_last": int(on[-1]) if len(on) else None, "boxes": boxes,
                "source_frames": source_ranges(s, start, n), "params": plan.params}
            span = f"anomalous frames {on[0]}-{on[-1]} ({len(on)})" if len(on) else "all normal"
            print(f"{s.name}/test/{stem}.mp4: {kind}, {n} frames ({n / FPS:.1f} s), {span}",
                  flush=True)
    (dst / "labels.json").write_text(json.dumps(labels))
    (dst / "scenarios.json").write_text(json.dumps(records, indent=1))


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"scenarios.py: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description="Build a labelled scenario kit (a development aid) from real footage.")
    ap.add_argument("--out", type=Path, required=True, help="output folder, outside the repository")
    ap.add_argument("--scenes", default="vtest,ped2,ped1", help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="folder with ucsd_ped1/ and ucsd_ped2/ (default: ../shared/data from the "
                         "repository root)")
    ap.add_argument("--vtest", type=Path, default=VTEST, help=f"vtest.avi (default: {VTEST})")
    ap.add_argument("--types", help="comma-separated scenario types to build (default: all): "
                    + ", ".join(PLANNERS))
    args = ap.parse_args(argv)
    # FFmpeg and OpenCV would print their own lines for an unreadable video; KitError says it once.
    # Read when the first video is opened, so setting it here, after `import cv2`, is in time.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        names = [n.strip() for n in args.scenes.split(",") if n.strip()]
        if not names or any(n not in PLACES for n in names):
            raise KitError(f"--scenes {args.scenes!r}: choose from vtest, ped2, ped1")
        types = None if args.types is None else [k.strip() for k in args.types.split(",")
                                                 if k.strip()]
        if types is not None and (not types or any(k not in PLANNERS for k in types)):
            raise KitError(f"--types {args.types!r}: choose from {', '.join(PLANNERS)}")
        if shutil.which("ffmpeg") is None:
            raise KitError("ffmpeg not found on PATH")
        sources = {n: inputs(n, args.data, args.vtest) for n in names}
        out = args.out.resolve()
        if (REPO / ".git").exists() and (out == REPO or REPO in out.parents):
            raise KitError(f"{args.out}: inside the repository; the kit is derived from "
                           "research-only data and must stay outside it")
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / ".write-test").write_bytes(b"")
            (out / ".write-test").unlink()
        except OSError as exc:
            raise KitError(f"{args.out}: not writable ({exc.strerror or exc})") from None
        for n in names:
            build_scene(load_scene(n, sources[n]), out, args.seed, types)
    except KitError as exc:
        print(f"scenarios.py: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"scenarios.py: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
