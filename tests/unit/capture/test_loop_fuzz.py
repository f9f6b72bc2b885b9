"""Fuzzing the capture path with broken files: random bytes, a real video cut short, a valid header
over garbage, a file that turns bad while it plays. The camera is reported and retried, the capture
thread never dies, and the log gets one line per change of state, never a traceback."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stream_detector.capture import Backoff, CaptureLoop, DropPolicy, FrameQueue, OpenCVSource
from stream_detector.messages import Frame


class Recorder:
    """What the loop reports (the CaptureObserver protocol), kept for the assertions."""

    def __init__(self) -> None:
        self.frames = 0
        self.states: list[bool] = []
        self.reconnects = 0

    def frame_read(self, camera: str) -> None:
        self.frames += 1

    def frame_dropped(self, camera: str) -> None:
        pass

    def frames_skipped(self, camera: str, n: int) -> None:
        pass

    def stream_state(self, camera: str, up: bool) -> None:
        self.states.append(up)

    def reconnecting(self, camera: str) -> None:
        self.reconnects += 1

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        pass


def random_bytes(n: int, seed: int) -> bytes:
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def run_capture(path: Path, seconds: float, loop: bool = False) -> tuple[Recorder, bool]:
    """Capture `path` for `seconds` with fast backoff: what was reported, and whether the loop was
    still alive when told to stop."""
    stop = threading.Event()
    rec = Recorder()
    capture = CaptureLoop("cam", lambda: OpenCVSource(str(path), realtime=False, loop=loop),
                          FrameQueue[Frame](8, DropPolicy.DROP_OLDEST), stop, rec, stale_after=2.0,
                          backoff=Backoff(initial=0.02, maximum=0.1))
    capture.start()
    time.sleep(seconds)
    alive = capture.is_alive()
    stop.set()
    capture.join(5.0)
    assert not capture.is_alive(), "the capture loop did not stop"
    return rec, alive


def capture_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "stream_detector.capture" and r.levelno >= level]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes_are_reported_once_and_retried(tmp_path: Path, seed: int,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "random.avi"
    path.write_bytes(random_bytes(64 * 1024, seed))
    caplog.set_level(logging.INFO, logger="stream_detector")
    rec, alive = run_capture(path, 1.5)
    assert alive
    assert rec.frames == 0 and rec.reconnects >= 3  # retried, with backoff
    assert rec.states == [False]  # reported once
    warnings = capture_lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "cannot open stream" in warnings[0], warnings
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("cut", [1024, 2_500_000])
def test_a_real_video_cut_short(tmp_path: Path, vtest: Path, cut: int,
                                caplog: pytest.LogCaptureFixture,
                                capfd: pytest.CaptureFixture[str]) -> None:
    """Cut inside the header: no frame ever, so reported and retried. Cut mid-stream: the frames
    before the cut play, then the file ends like any file (looped: it plays again)."""
    data = vtest.read_bytes()
    path = tmp_path / "cut.avi"
    path.write_bytes(data[:cut])
    caplog.set_level(logging.INFO, logger="stream_detector")
    rec, alive = run_capture(path, 2.0, loop=True)
    assert alive
    warnings = capture_lines(caplog, logging.WARNING)
    if cut < 10_000:
        assert rec.frames == 0 and rec.reconnects >= 3 and rec.states == [False]
        assert len(warnings) == 1, warnings
    else:
        assert rec.frames > 100 and rec.states == [True] and warnings == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_valid_header_over_garbage(tmp_path: Path, vtest: Path, caplog: pytest.LogCaptureFixture,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    head = vtest.read_bytes()[:200 * 1024]
    path = tmp_path / "garbage.avi"
    path.write_bytes(head + random_bytes(400 * 1024, 7))
    caplog.set_level(logging.INFO, logger="stream_detector")
    rec, alive = run_capture(path, 2.0, loop=True)
    assert alive
    changes = [m for m in capture_lines(caplog, logging.INFO)]
    # Each line is a change of state (up, lost, cannot open), never a repeat of the same one.
    assert all(a.split("(")[0] != b.split("(")[0] for a, b in zip(changes, changes[1:])), changes
    assert len(rec.states) == len([m for m in changes if "stream up" in m or "stream lost" in m
                                   or "cannot open" in m])
    assert "Traceback" not in capfd.readouterr().err


def test_a_looped_file_that_turns_to_garbage_is_reported_and_retried(
        tmp_path: Path, vtest: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clip.avi"
    data = vtest.read_bytes()
    path.write_bytes(data[:len(data) // 10])  # a short real clip, looped
    caplog.set_level(logging.INFO, logger="stream_detector")
    stop, rec = threading.Event(), Recorder()
    capture = CaptureLoop("cam", lambda: OpenCVSource(str(path), realtime=False, loop=True),
                          FrameQueue[Frame](8, DropPolicy.DROP_OLDEST), stop, rec, stale_after=2.0,
                          backoff=Backoff(initial=0.02, maximum=0.1))
    capture.start()
    try:
        deadline = time.monotonic() + 10
        while rec.frames < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.frames >= 50
        shutil.copyfile(path, tmp_path / "was.avi")
        path.write_bytes(random_bytes(64 * 1024, 11))  # the next loop cannot reopen it
        deadline = time.monotonic() + 10
        while rec.reconnects < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert capture.is_alive() and rec.reconnects >= 3
        assert rec.states == [True, False]
        path.write_bytes((tmp_path / "was.avi").read_bytes())  # it comes back: so does the camera
        deadline = time.monotonic() + 10
        while rec.states[-1] is False and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.states == [True, False, True]
    finally:
        stop.set()
        capture.join(5.0)
    lines = capture_lines(caplog, logging.INFO)
    assert len(lines) == 3, lines  # up, lost, up: one line per change of state
    assert "Traceback" not in capfd.readouterr().err
