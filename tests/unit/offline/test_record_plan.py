"""Recording plans and the recorder's writer: a long span is sampled end to end within fit's frame
budget; the file's rate is what the camera really delivers; a size change stops the recording; a
window when the camera is down is skipped."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_detector.capture import video_info
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError
from stream_detector.messages import Frame
from stream_detector.offline import Window, plan_windows, record
from stream_detector.offline.record import _Writer


def test_a_short_span_is_recorded_whole_and_a_long_one_in_windows_spread_over_it() -> None:
    assert plan_windows(20, 10, 6000) == [Window(0.0, 20)]
    windows = plan_windows(20 * 60, 10, 6000)  # 12,000 frames: twice what fit keeps
    assert len(windows) == 30 and all(w.length == 20 for w in windows)
    assert windows[0].start == 0 and windows[-1].start == pytest.approx(1160)  # to the end
    assert sum(w.length for w in windows) * 10 <= 6000


def test_every_and_take_record_a_few_seconds_each_interval() -> None:
    windows = plan_windows(86400, 10, 6000, every=3600, take=180)
    assert len(windows) == 24 and windows[5] == Window(5 * 3600.0, 180)
    assert plan_windows(7, 10, 6000, every=4, take=3) == [Window(0.0, 3), Window(4.0, 3)]
    with pytest.raises(SourceError, match="too little to fit a model"):
        plan_windows(6, 10, 6000, every=4, take=2)


def frames(n: int, rate: float, size: tuple[int, int] = (64, 48)) -> list[Frame]:
    start = time.monotonic()
    image = np.zeros((size[1], size[0], 3), np.uint8)
    return [Frame("cam", i, i / rate, 0.0, start + i / rate, image) for i in range(n)]


@pytest.mark.parametrize(("delivered", "written"), [(10.0, 10.0), (12.0, 10.0), (4.0, 4.0)])
def test_the_file_has_the_rate_the_camera_delivered_when_it_is_slower(
        tmp_path: Path, delivered: float, written: float) -> None:
    writer = _Writer(tmp_path / "a.avi", (64, 48), 10.0, None, threading.Event())
    for f in frames(40, delivered):
        writer.put(f)
    writer.close()
    info = video_info(tmp_path / "a.avi")
    assert writer.rate == written and info.fps == pytest.approx(written) and info.frames == 40


def test_a_frame_of_another_size_stops_the_window_with_the_reason(tmp_path: Path) -> None:
    done = threading.Event()
    writer = _Writer(tmp_path / "a.avi", (64, 48), 10.0, 10.0, done)
    for f in frames(5, 10) + frames(1, 10, (80, 60)) + frames(5, 10):
        writer.put(f)
    writer.close()
    assert done.is_set() and writer.frames == 5
    assert "changed size from 64x48 to 80x60" in str(writer.error)


def test_a_window_when_the_camera_is_down_is_skipped_and_the_others_kept(
        tmp_path: Path, street: list[np.ndarray]) -> None:
    """A file camera (read as fast as it decodes, its rate its own 10 frames/s) whose file is gone
    during the second of three windows."""
    clip = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (192, 144))
    for frame in street[:100]:
        writer.write(frame)
    writer.release()
    away = tmp_path / "away.avi"
    waits: list[float] = []

    def between_windows(seconds: float) -> None:  # the recorder waits for a window's start here
        waits.append(seconds)
        if len(waits) == 1:
            clip.rename(away)  # the camera goes down before the second window ...
        else:
            away.rename(clip)  # ... and is back for the third
        time.sleep(seconds)

    camera = CameraConfig(source=str(clip), realtime=False, stale_after=1.0)
    recording = record(camera, "cam", tmp_path / "out", [Window(0, 3), Window(1.5, 3), Window(4, 3)],
                       0.0, open_timeout=1.5, sleep=between_windows)
    assert len(waits) == 2 and len(recording.files) == 2
    assert [video_info(f).frames for f in recording.files] == [30, 30]  # 3 s at its 10 frames/s
