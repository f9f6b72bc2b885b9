"""The capture loop against a fake FrameSource: frames in order, drops counted, losses in the
queue with the frames, reconnects with backoff, hung opens and reads abandoned; Backoff itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from stream_detector.capture import (
    Backoff,
    CaptureLoop,
    DropPolicy,
    FrameQueue,
    FrameSource,
)
from stream_detector.errors import SourceError
from stream_detector.messages import Frame, StreamState


def test_backoff_grows_to_the_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    b = Backoff(initial=1.0, maximum=100.0, factor=1.0, jitter=0.2, rng=random.Random(7))
    delays = [b.next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 100
    capped = Backoff(initial=10.0, maximum=10.0, jitter=0.5, rng=random.Random(1))
    assert all(5.0 <= capped.next() <= 10.0 for _ in range(100))


@pytest.mark.parametrize("kw", [{"initial": 0.0}, {"initial": 5.0, "maximum": 1.0},
                                {"factor": 0.5}, {"jitter": 1.0}])
def test_backoff_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)  # type: ignore[arg-type]


class FakeSource:
    """Plays `sizes` (one (w, h) per frame) at 10 fps of stream time, then ends as told."""

    def __init__(self, sizes: list[tuple[int, int]], then: str = "fail", open_error: str = "",
                 interval: float = 0.0) -> None:
        self.sizes, self.then, self.open_error, self.interval = sizes, then, open_error, interval
        self.pos = -1
        self.retrieved = 0
        self.closed = False
        self.interrupted = False
        self.release = threading.Event()  # lets a hung grab return at teardown

    def open(self) -> None:
        if self.open_error == "hang":
            self.release.wait(10)
        elif self.open_error:
            raise SourceError(self.open_error)

    def grab(self) -> bool:
        if self.interval:
            time.sleep(self.interval)
        if self.then == "crash" and self.pos + 1 >= len(self.sizes):
            raise RuntimeError("driver bug")
        if self.pos + 1 >= len(self.sizes):
            if self.then == "hang":
                self.release.wait(10)
            if self.then == "forever":
                self.sizes.append(self.sizes[-1])
            else:
                return False
        self.pos += 1
        return True

    def retrieve(self) -> np.ndarray | None:
        self.retrieved += 1
        w, h = self.sizes[self.pos]
        return np.full((h, w, 3), self.pos % 256, np.uint8)

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def close(self) -> None:
        self.closed = True

    def interrupt(self) -> None:
        """As a child-process source does: a hung open or read returns at once."""
        self.interrupted = True
        self.release.set()

    @property
    def stream_time(self) -> float:
        return self.pos / 10.0

    @property
    def finished(self) -> bool:
        return self.then == "finish" and self.pos + 1 >= len(self.sizes)


class Recorder:
    """Records what the loop reports, in order; lets a test wait for a given call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._cond = threading.Condition()

    def _add(self, *call: object) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def frame_read(self, camera: str) -> None:
        self._add("read", camera)

    def frame_dropped(self, camera: str) -> None:
        self._add("dropped", camera)

    def frames_skipped(self, camera: str, n: int) -> None:
        self._add("skipped", n)

    def stream_state(self, camera: str, up: bool) -> None:
        self._add("up" if up else "down", camera)

    def reconnecting(self, camera: str) -> None:
        self._add("reconnecting", camera)

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        self._add("size", width, height)

    def states(self) -> list[str]:
        with self._cond:
            return [str(c[0]) for c in self.calls if c[0] in ("up", "down", "reconnecting")]

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for c in self.calls if c[0] == kind)

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(pred, timeout)


def sources(*items: FakeSource) -> Callable[[], FrameSource]:
    """An open_source factory handing out the given sources, then repeating the last."""
    made = list(items)

    def make() -> FrameSource:
        return made.pop(0) if len(made) > 1 else made[0]
    return make


FAST = {"initial": 0.01, "maximum": 0.02, "jitter": 0.0}


@pytest.fixture()
def run_loop() -> Iterator[Callable[..., tuple[CaptureLoop, FrameQueue[Frame], Recorder]]]:
    stop = threading.Event()
    loops: list[CaptureLoop] = []

    def start(open_source: Callable[[], FrameSource], maxsize: int = 64,
              **kw: object) -> tuple[CaptureLoop, FrameQueue[Frame], Recorder]:
        q: FrameQueue[Frame] = FrameQueue(maxsize, DropPolicy.DROP_OLDEST,  # type: ignore[arg-type]
                                          keep=lambda item: isinstance(item, StreamState))
        rec = Recorder()
        kw.setdefault("backoff", Backoff(**FAST))  # type: ignore[arg-type]
        loop = CaptureLoop("door", open_source, q, stop, rec, **kw)  # type: ignore[arg-type]
        loop.start()
        loops.append(loop)
        return loop, q, rec

    yield start
    stop.set()
    for loop in loops:
        loop.join(3)
        assert not loop.is_alive()


def frames_of(q: FrameQueue[Any]) -> list[Frame]:
    """The frames in the queue, without the stream-state messages between them."""
    return [f for f in q.get_all() if isinstance(f, Frame)]


def test_frames_flow_in_order_until_a_finite_source_ends(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 20, then="finish")
    loop, q, rec = run_loop(sources(src))
    loop.join(3)
    assert not loop.is_alive()  # a finished file is final: no reconnect
    items = q.get_all()
    first, last = items[0], items[-1]
    assert isinstance(first, StreamState) and first.up  # in order with the frames, not beside them
    assert isinstance(last, StreamState) and not last.up and last.reason == "end of source"
    frames = items[1:-1]
    assert [f.index for f in frames] == list(range(20))
    assert [f.stream_time for f in frames] == pytest.approx([i / 10 for i in range(20)])
    assert all(f.camera == "door" and f.image.shape == (48, 64, 3) for f in frames)
    assert frames[0].mono_time <= frames[-1].mono_time
    assert rec.states() == ["up", "down"] and rec.count("read") == 20
    assert src.closed


def test_full_queue_drops_oldest_and_counts(run_loop) -> None:  # type: ignore[no-untyped-def]
    loop, q, rec = run_loop(sources(FakeSource([(64, 48)] * 20, then="finish")), maxsize=4)
    loop.join(3)
    items = q.get_all()  # the state messages are never the ones dropped
    assert [f.index if isinstance(f, Frame) else f.up for f in items] == [True, 18, 19, False]
    assert q.dropped == 18 and rec.count("dropped") == 17  # 17 frames refused, then 1 for "down"


def test_lost_stream_reconnects_and_frames_continue(run_loop, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "stream_detector.capture")
    first = FakeSource([(64, 48)] * 5, then="fail")
    second = FakeSource([(64, 48)] * 5, then="finish")
    loop, q, rec = run_loop(sources(first, second))
    loop.join(3)
    items = q.get_all()
    assert [f.index if isinstance(f, Frame) else f.up for f in items] == [
        True, 0, 1, 2, 3, 4, False, True, 0, 1, 2, 3, 4, False]  # the loss between the frames
    assert rec.states() == ["up", "down", "reconnecting", "up", "down"]
    assert first.closed and second.closed
    lost = [r.getMessage() for r in caplog.records if "stream lost" in r.getMessage()]
    assert lost == ["camera door: stream lost (source returned no frame), reconnecting in 0.0s"]


def test_camera_down_at_start_is_retried_and_logged_once(run_loop, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, "stream_detector.capture")
    down = FakeSource([], open_error="rtsp://cam/1: cannot open (refused)")
    up = FakeSource([(64, 48)] * 3, then="finish")
    loop, q, rec = run_loop(sources(down, down, down, up))
    loop.join(3)
    assert len(frames_of(q)) == 3
    assert rec.states() == ["down", "reconnecting", "reconnecting", "reconnecting", "up", "down"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [("camera door: cannot open stream (rtsp://cam/1: cannot open (refused)), "
                         "reconnecting in 0.0s")]


def test_resolution_change_mid_stream(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 3 + [(32, 24)] * 3, then="finish")
    loop, q, rec = run_loop(sources(src))
    loop.join(3)
    assert [f.image.shape[:2] for f in frames_of(q)] == [(48, 64)] * 3 + [(24, 32)] * 3
    assert [c for c in rec.calls if c[0] == "size"] == [("size", 64, 48), ("size", 32, 24)]


def test_fps_limit_skips_frames_without_converting_them(run_loop) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 20, then="finish")  # 10 fps of stream time
    loop, q, rec = run_loop(sources(src), fps_limit=5.0)
    loop.join(3)
    assert [f.index for f in frames_of(q)] == list(range(0, 20, 2))
    assert src.retrieved == 10
    assert [c for c in rec.calls if c[0] == "skipped"] == [("skipped", 1)] * 9  # counted, not lost


def test_hung_source_counts_as_lost_after_stale_after(run_loop) -> None:  # type: ignore[no-untyped-def]
    hung = FakeSource([(64, 48)] * 3, then="hang")
    good = FakeSource([(64, 48)] * 3, then="finish")
    t0 = time.monotonic()
    loop, _, rec = run_loop(sources(hung, good), stale_after=0.3)
    try:
        assert rec.wait_for(lambda: rec.count("read") == 6, 3.0)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert rec.states()[:4] == ["up", "down", "reconnecting", "up"]
    finally:
        hung.release.set()
    loop.join(3)
    deadline = time.monotonic() + 2.0
    while not hung.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hung.closed  # the abandoned reader closed its source once the grab returned


def test_hung_open_is_abandoned_after_open_timeout(run_loop) -> None:  # type: ignore[no-untyped-def]
    hung = FakeSource([(64, 48)], open_error="hang")
    good = FakeSource([(64, 48)] * 3, then="finish")
    t0 = time.monotonic()
    _, _, rec = run_loop(sources(hung, good), stale_after=30.0, open_timeout=0.3)
    try:
        assert rec.wait_for(lambda: rec.count("read") == 3, 3.0)
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert rec.states()[:3] == ["down", "reconnecting", "up"]
    finally:
        hung.release.set()


def test_stop_interrupts_a_hung_open_so_no_reader_outlives_the_loop(run_loop) -> None:  # type: ignore[no-untyped-def]
    hung = FakeSource([(64, 48)], open_error="hang")
    loop, _, _ = run_loop(sources(hung), stale_after=30.0, open_timeout=30.0)
    time.sleep(0.3)  # the reader is inside open()
    t0 = time.monotonic()
    loop.stop.set()
    loop.join(2)
    readers = [t for t in threading.enumerate() if t.name == "capture-door-reader"]
    for reader in readers:
        reader.join(1.0)
    assert hung.interrupted and not any(r.is_alive() for r in readers)
    assert time.monotonic() - t0 < 1.5


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashing_source_is_reconnected_without_waiting_for_staleness(run_loop) -> None:  # type: ignore[no-untyped-def]
    crash = FakeSource([(64, 48)] * 2, then="crash")
    good = FakeSource([(64, 48)] * 2, then="finish")
    loop, _, rec = run_loop(sources(crash, good), stale_after=30.0)
    loop.join(3)
    assert rec.states() == ["up", "down", "reconnecting", "up", "down"]
    assert crash.closed


@pytest.mark.parametrize("then", ["forever", "hang"])
def test_stop_ends_the_loop_promptly(run_loop, then: str) -> None:  # type: ignore[no-untyped-def]
    src = FakeSource([(64, 48)] * 2, then=then, interval=0.005)
    loop, _, rec = run_loop(sources(src), stale_after=30.0)
    try:
        assert rec.wait_for(lambda: rec.count("read") >= 2)
        t0 = time.monotonic()
        loop.stop.set()
        loop.join(2.5)
        assert not loop.is_alive() and time.monotonic() - t0 < 2.5
    finally:
        src.release.set()
