"""What the scene watch costs a camera's capture thread: the picture measure alone at two frame
sizes, and the whole watch (a day/night pair of rules and the tamper detector) over vtest.avi at
its 10 frames/s, as CPU time per second of video.

    python benchmarks/scene_watch.py [--frames 400] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import cv2

from stream_detector.config import ModelChoice
from stream_detector.detect import SceneWatch, TamperDetector, measure
from stream_detector.messages import Frame, SceneChange, StreamState

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


class _Discard:
    def put(self, item: Frame | StreamState | SceneChange) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    while len(frames) < args.frames and (got := cap.read())[0]:
        frames.append(got[1])
    print(f"{platform.machine()}, {len(frames)} frames of {VTEST.name}")
    for size in [(768, 576), (1920, 1080)]:
        sized = [cv2.resize(f, size) for f in frames[:100]]
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            for f in sized:
                measure(f)
            times.append((time.perf_counter() - started) / len(sized) * 1000)
        print(f"measure at {size[0]}x{size[1]}: best {min(times):.2f} ms, median "
              f"{statistics.median(times):.2f} ms per frame ({args.repeat} passes)")
    rules = (ModelChoice("night", "n", picture="grey"), ModelChoice("day", "d"))
    watch = SceneWatch("door", _Discard(), rules, "day", TamperDetector())
    cpu = time.process_time()
    for i, f in enumerate(frames):
        watch.put(Frame("door", i, i / 10, 1e9 + i / 10, 0.0, f))
    used = time.process_time() - cpu
    seconds = len(frames) / 10
    print(f"the whole watch over {seconds:.0f} s of 768x576 video: {used:.2f} CPU-s, "
          f"{used / seconds * 100:.2f} % of a core")


if __name__ == "__main__":
    main()
