"""Normal footage recorded from a live camera, for `fit` and `record`: read as the daemon reads the
camera (its capture loop: reconnects, staleness, the rate it scores at), written as MJPG files,
one per recording window, each named by the camera and the local time its window began.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream_detector.capture import CaptureLoop, CaptureObserver, probe_frame, redact, source_for
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError
from stream_detector.messages import Frame, StreamState
from stream_detector.offline.progress import Progress

SEGMENT = 20.0  # seconds per window when a long span is sampled: 200 frames, one fitting block
# Seconds of frames that show the rate the camera really delivers; a live stream's first frames can
# come in a burst or late, so a rate within 20 % of the one asked for counts as that one.
RATE_AFTER = 4.0
MIN_SECONDS = 5.0  # less footage than this cannot hold both training and held-back blocks
STAMP = "%Y%m%dT%H%M%S"  # in file names: `fit --split` reads the time of day from it


@dataclass(frozen=True)
class Window:
    start: float  # seconds after the recording began
    length: float  # seconds of frames, counted from the window's first frame


def plan_windows(duration: float, fps: float, budget: int, every: float | None = None,
                 take: float | None = None) -> list[Window]:
    """When to record. With `every`/`take`: `take` seconds at the start of every `every` seconds.
    Else the whole `duration`, unless it holds more than `budget` frames (what `fit` keeps): then
    SEGMENT-long windows evenly spread over it, so the footage spans all of it in that budget."""
    if (every is None) != (take is None):
        raise SourceError("--every and --take go together")
    if every is not None and take is not None:
        if not take <= every <= duration:
            raise SourceError(f"--take {take:g}s, --every {every:g}s, --duration {duration:g}s: "
                              f"need take <= every <= duration")
        windows = [Window(float(s), min(take, duration - float(s)))
                   for s in np.arange(0.0, duration, every)]
    else:
        windows = [Window(0.0, duration)]
    if (planned := sum(w.length for w in windows)) < MIN_SECONDS:
        raise SourceError(f"{planned:g}s of footage is too little to fit a model (record at least "
                          f"{MIN_SECONDS:g}s: --duration, --take)")
    if every is not None:
        return windows
    fps = fps or 30.0  # 0: every frame the camera sends, at most ~30 a second
    if duration * fps <= budget:
        return [Window(0.0, duration)]
    count = max(2, math.floor(budget / (fps * SEGMENT)))
    spacing = duration / count
    return [Window(i * spacing, min(SEGMENT, spacing)) for i in range(count)]


def recording_rate(requested: float | None, cam: CameraConfig) -> float:
    """Frames per second to keep: as requested, else the rate the daemon scores the camera at (its
    fps_limit; 0: every frame), else 10."""
    return float(requested or (cam.fps_limit if cam.fps_limit is not None else 10.0))


@dataclass(frozen=True)
class Recording:
    files: list[Path]
    frames: int
    fps: float  # the files' frame rate: the requested one, or what the camera delivered if less
    spans: list[tuple[float, float]]  # per file: monotonic times of its first and last frame

    def summary(self, kept: Path | None) -> str:
        spans = ", ".join(f"{last - first:.1f}s" for first, last in self.spans)
        where = f" in {kept}" if kept else " (not kept)"
        return (f"recorded {self.frames} frames at {self.fps:g} frames/s in {len(self.files)} "
                f"file(s){where}, spanning {spans}")


class _Writer:
    """The capture loop's receiver during one window: `length` seconds of frames into one MJPG file
    (in the capture thread), counted at the rate of the file, so 20 s at 10 frames/s are 200 frames,
    one block of `fit`. Its first RATE_AFTER seconds are held until the camera's real rate is known."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, rate_known: float | None,
                 done: threading.Event, length: float = math.inf) -> None:
        self.path, self.size, self.fps, self.done, self.length = path, size, fps, done, length
        self.rate = rate_known  # None until measured (the first window)
        self.held: list[Frame] = []
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.first: float | None = None
        self.last = 0.0
        self.error: SourceError | None = None

    def put(self, item: Frame | StreamState) -> bool:
        if not isinstance(item, Frame) or self.done.is_set():
            return True
        h, w = item.image.shape[:2]
        if (w, h) != self.size:
            self.error = SourceError(f"the stream changed size from {self.size[0]}x{self.size[1]} "
                                     f"to {w}x{h}: a model is fitted to one size (set the "
                                     f"camera's width/height, or record its substream)")
            self.done.set()
            return True
        self.first = self.first if self.first is not None else item.mono_time
        self.last = item.mono_time
        if self.writer is None:
            self.held.append(item)
            if self.rate is None and self.last - self.first < RATE_AFTER:
                return True
            self._open()
        else:
            self._write(item)
        return True

    def _open(self) -> None:
        if self.rate is None and len(self.held) > 1:  # by stream time: a file's own, a camera's arrival
            span = self.held[-1].stream_time - self.held[0].stream_time
            measured = (len(self.held) - 1) / max(1e-3, span)
            keep = self.fps > 0 and measured >= 0.8 * self.fps  # fps 0: every frame the camera sends
            self.rate = self.fps if keep else round(measured, 1)
        self.rate = self.rate or self.fps
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), self.rate,
                                      self.size)
        if not self.writer.isOpened():
            raise OSError(f"{self.path}: cannot write a video file here")
        for frame in self.held:
            self._write(frame)
        self.held = []

    def _write(self, frame: Frame) -> None:
        assert self.writer is not None and self.rate
        if self.frames >= self.length * self.rate - 0.5:  # round(length x rate) frames written
            self.done.set()  # the window is full
            return
        self.writer.write(frame.image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is None and self.held:
            self._open()
        if self.writer is not None:
            self.writer.release()


class _Quiet(CaptureObserver):
    """What the capture loop reports, dropped (the protocol's methods do nothing): the recorder
    only needs its frames."""


def record(cam: CameraConfig, name: str, folder: Path, windows: list[Window], fps: float,
           open_timeout: float = 30.0, sleep: Callable[[float], object] = time.sleep) -> Recording:
    """Record `windows` of the camera into `folder`. A camera unreachable at the start, a stream
    that changes size, and footage too short to fit are SourceErrors: one line. A window whose
    camera sends nothing within `open_timeout` is skipped (a day's recording survives an outage)."""
    what = redact(cam.source)
    first = probe_frame(cam, name, open_timeout)  # unreachable: one line, before any file exists
    size = (int(first.shape[1]), int(first.shape[0]))
    folder.mkdir(parents=True, exist_ok=True)
    began, files, spans, frames, rate = time.monotonic(), [], [], 0, None
    total = sum(w.length for w in windows)
    bar = Progress(f"recording {name}", max(1, round(total)))
    for i, window in enumerate(windows):
        if (wait := began + window.start - time.monotonic()) > 0:
            bar.update(round(sum(w.length for w in windows[:i])), f"next window in {wait:.0f}s",
                       force=True)
            sleep(wait)
        path = folder / f"{name}-{dt.datetime.now():{STAMP}}.avi"
        session = _Window(cam, name, path, size, fps, rate, window.length, open_timeout, what)
        session.run(lambda done: bar.update(round(sum(w.length for w in windows[:i]) + done),
                                            f"window {i + 1}/{len(windows)}"))
        if not session.frames:
            bar.update(round(sum(w.length for w in windows[:i + 1])), f"window {i + 1}: no frame "
                       f"within {open_timeout:g}s, skipped", force=True)
            continue
        files.append(path)
        spans.append(session.span)
        frames += session.frames
        rate = session.rate
    bar.update(round(total), f"{frames} frames in {len(files)} file(s)", force=True)
    seconds = frames / (rate or fps)
    if seconds < MIN_SECONDS:
        raise SourceError(f"{what}: too little footage: {frames} frames ({seconds:.1f} s) in "
                          f"{total:.0f} s of recording; record longer (at least {MIN_SECONDS:g} s "
                          f"of frames)")
    return Recording(files, frames, rate or fps, spans)


class _Window:
    """One recording window: a capture loop feeding a _Writer until `length` seconds of frames (or
    none at all within `open_timeout`)."""

    def __init__(self, cam: CameraConfig, name: str, path: Path, size: tuple[int, int], fps: float,
                 rate: float | None, length: float, open_timeout: float, what: str) -> None:
        self.cam, self.name, self.length, self.what = cam, name, length, what
        self.open_timeout = open_timeout
        self.done = threading.Event()
        self.sink = _Writer(path, size, fps, rate, self.done, length)
        self.stop = threading.Event()

    def run(self, progress: Callable[[float], None]) -> None:
        loop = CaptureLoop(self.name, lambda: source_for(self.cam), self.sink, self.stop, _Quiet(),
                           stale_after=self.cam.stale_after, fps_limit=self.sink.fps,
                           open_timeout=self.open_timeout)
        started = time.monotonic()
        loop.start()
        try:
            while not self.done.wait(0.5):
                first = self.sink.first
                if first is None and time.monotonic() - started > self.open_timeout:
                    break  # the camera is down: this window is skipped
                if first is not None:
                    progress(min(self.length, self.sink.last - first))
                    # Full by its frames (the writer says so), or late: a camera that dropped out
                    # for part of the window does not hold the recording up for long.
                    if self.sink.last - first >= 1.25 * self.length + 2.0 or loop.finished:
                        break
                elif loop.finished:  # a file camera that ended
                    break
        finally:
            self.stop.set()
            self.done.set()
            loop.join(5.0)
            self.sink.close()
        if self.sink.error is not None:
            raise SourceError(f"{self.what}: {self.sink.error}")

    @property
    def span(self) -> tuple[float, float]:
        return (self.sink.first or 0.0, self.sink.last)

    @property
    def frames(self) -> int:
        return self.sink.frames

    @property
    def rate(self) -> float | None:
        return self.sink.rate
