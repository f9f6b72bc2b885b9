"""The OpenCV reader process: one network camera opened and decoded by OpenCV in a process of its
own, frames written to stdout. Run as a script (`python opencv_reader.py FD`), importing only
OpenCV and numpy; the camera's URL and timeouts arrive as JSON on descriptor FD, never in argv.

OpenCV opens its FFmpeg captures one at a time, process-wide: in the daemon, a camera whose open
hangs for its 10 s timeout would hold every other camera's open or reopen (a looped file's, at each
pass) behind it. In a process of its own a camera shares that lock with no one, and the daemon can
kill it at any moment. Each frame goes out as width and height (two little-endian uint32) and then
its BGR bytes; width 0 marks a frame that could not be decoded. The reason for exiting is the last
line on stderr.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time

import cv2
import numpy as np

HEADER = struct.Struct("<II")


def _exit_with_the_daemon() -> None:
    """Exit when the daemon is gone (killed, even -9), even while an open or a read hangs."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(fd: int) -> int:
    with os.fdopen(fd, "rb") as spec_file:
        spec = json.loads(spec_file.read())
    threading.Thread(target=_exit_with_the_daemon, daemon=True).start()
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(spec["open_timeout"] * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(spec["read_timeout"] * 1000),
              cv2.CAP_PROP_N_THREADS, int(spec["threads"])]
    cap = cv2.VideoCapture(spec["url"], cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        print(f"refused, unreachable within {spec['open_timeout']:g}s, or not a video stream",
              file=sys.stderr, flush=True)
        return 1
    out = sys.stdout.fileno()
    try:
        while cap.grab():
            ok, frame = cap.retrieve()
            if not ok or frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                _write_all(out, HEADER.pack(0, 0))
                continue
            height, width = frame.shape[:2]
            _write_all(out, HEADER.pack(width, height))
            _write_all(out, memoryview(np.ascontiguousarray(frame)).cast("B"))
    except BrokenPipeError:  # the daemon closed the connection
        return 0
    print("the stream ended or sent nothing in time", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
