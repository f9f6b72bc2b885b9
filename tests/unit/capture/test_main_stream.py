"""The main-stream reader of a camera that scores its `detect_source`: a short bounded history,
the frame nearest a time, and a file that vanishes, turns to garbage and returns, ridden out.

Real clips throughout: vtest.avi (768x576) is the main stream, a 384x288 cut of it the substream.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_detector.capture import (
    Backoff,
    FrameHistory,
    MainStream,
    main_stream_config,
    source_for,
)
from stream_detector.config import CameraConfig
from stream_detector.messages import Frame


def frame(mono: float, index: int = 0) -> Frame:
    return Frame("door", index, mono, time.time(), mono, np.zeros((4, 4, 3), np.uint8))


class States:
    """The main stream's state reports, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool | None]] = []
        self.changed = threading.Condition()

    def __call__(self, camera: str, up: bool | None) -> None:
        with self.changed:
            self.seen.append((camera, up))
            self.changed.notify_all()

    def wait(self, up: bool | None, after: int = 0, timeout: float = 15.0) -> int:
        """Index of the first report `up` from `after` on; fails after `timeout` seconds."""
        with self.changed:
            ok = self.changed.wait_for(lambda: any(u is up for _, u in self.seen[after:]), timeout)
            assert ok, f"no {up} report after #{after} within {timeout}s: {self.seen}"
            return next(i for i in range(after, len(self.seen)) if self.seen[i][1] is up)


def reader(source: str, states: States, **camera: Any) -> MainStream:
    cfg = CameraConfig(source=source, detect_source="unused.mp4", capture="opencv", **camera)
    main_cfg = main_stream_config(cfg)
    assert main_cfg is not None
    return MainStream("door", lambda: source_for(main_cfg), states, stale_after=2.0,
                      backoff=lambda: Backoff(0.05, 0.2))


def test_history_keeps_the_last_seconds_and_at_most_its_frame_budget() -> None:
    history = FrameHistory(seconds=3.0, fps=4.0)
    for i in range(100):  # 10 s at 10 fps: more than the span and more than the budget
        history.put(frame(100.0 + i * 0.1, i))
    assert len(history) == 13  # 3 s x 4 fps + 1
    history = FrameHistory(seconds=3.0, fps=4.0)
    for i in range(10):  # 1 frame every 2 s: the span, not the budget, limits it
        history.put(frame(100.0 + 2.0 * i, i))
    assert len(history) == 2 and history.oldest() == 116.0


def test_nearest_frame_in_capture_time_or_none_when_too_far() -> None:
    history = FrameHistory(seconds=3.0, fps=4.0)
    for t in (10.0, 10.25, 10.5, 10.75, 11.0):
        history.put(frame(t))
    for wanted, expected in [(10.3, 10.25), (10.4, 10.5), (9.5, 10.0), (11.9, 11.0),
                             (10.75, 10.75)]:
        found = history.nearest(wanted)
        assert found is not None and found.mono_time == expected, (wanted, found)
    assert history.nearest(12.1) is None and history.nearest(8.9) is None
    assert FrameHistory().nearest(10.0) is None


def test_reader_keeps_a_bounded_history_of_converted_frames(small: Path) -> None:
    """A 6 s file read as fast as it decodes: every frame grabbed, about 4 per second converted,
    never more than the budget kept."""
    states = States()
    main = reader(str(small), states, realtime=False)
    main.start()
    try:
        main.loop.join(30)
        assert main.loop.finished, "the file should end and the reader finish"
        kept = list(main.frames._frames)
        assert 2 <= len(kept) <= 13
        assert all(f.image.shape == (288, 384, 3) for f in kept)
        gaps = np.diff([f.stream_time for f in kept])
        assert gaps.min() > 0.19, gaps  # 10 fps file, 4 fps kept: frames in between not converted
        assert [u for _, u in states.seen][:2] == [False, True]
    finally:
        main.stop()
    assert states.seen[-1] == ("door", None)


def test_reader_reconnects_after_the_file_vanishes_turns_to_garbage_and_returns(
        second: Path, tmp_path: Path) -> None:
    path = tmp_path / "main.mp4"
    shutil.copy(second, path)
    states = States()
    main = reader(str(path), states, loop=True)
    main.start()
    try:
        up = states.wait(True)
        path.rename(tmp_path / "away.mp4")  # the next loop of the file cannot reopen it
        down = states.wait(False, after=up)
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
        time.sleep(0.8)  # several retries on garbage: still down, the thread alive
        assert main.loop.is_alive() and all(u is False for _, u in states.seen[down:])
        before = len(main.frames)
        (tmp_path / "away.mp4").replace(path)
        states.wait(True, after=down)
        deadline = time.monotonic() + 10
        while (newest := main.frames.nearest(time.monotonic(), within=0.5)) is None:
            assert time.monotonic() < deadline, "no fresh frame after the file returned"
            time.sleep(0.05)
        assert newest.image.shape == (288, 384, 3) and len(main.frames) >= min(before, 1)
    finally:
        main.stop()
    assert not main.loop.is_alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_main_stream_thread_that_dies_of_a_bug_is_restarted(second: Path) -> None:
    states = States()
    main = reader(str(second), states, loop=True)
    main.start()
    try:
        states.wait(True)
        dead = main.loop

        def broken(item: Any) -> bool:
            raise RuntimeError("injected main-stream fault")

        main.frames.put = broken  # type: ignore[method-assign]
        dead.join(10)
        assert not dead.is_alive() and not dead.finished
        del main.frames.put  # the bug is gone; the history the renderer holds stays the same
        assert main.supervise() and main.loop is not dead
        deadline = time.monotonic() + 10
        while main.frames.nearest(time.monotonic(), within=0.5) is None:
            assert time.monotonic() < deadline, "the restarted reader keeps nothing"
            time.sleep(0.05)
        assert not main.supervise()
    finally:
        main.stop()
