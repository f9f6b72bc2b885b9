"""The scene watch as a capture thread uses it: every item passes on to the frame queue, and a
SceneChange follows the frame that showed it: the night model within 2 s of the picture turning
grey, a model by the frames' clock, a tamper verdict; none is ever dropped from a full queue."""

from __future__ import annotations

import datetime as dt
import time

import cv2
import numpy as np

from stream_detector.capture import DropPolicy, FrameQueue, never_dropped
from stream_detector.config import CameraConfig, ModelChoice
from stream_detector.detect import SceneWatch, TamperDetector
from stream_detector.messages import Frame, SceneChange, StreamState

NIGHT = ModelChoice("night", "models/night", picture="grey")
DAY = ModelChoice("day", "models/day")


def frame(i: float, image: np.ndarray, wall: float = 1e9) -> Frame:
    return Frame("door", int(i), i / 10, wall + i / 10, time.monotonic(), image)


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def changes(queue: FrameQueue[object]) -> list[tuple[int, SceneChange]]:
    """Each SceneChange with the index of the frame it followed."""
    out, last = [], -1
    for item in queue.get_all():
        if isinstance(item, Frame):
            last = item.index
        elif isinstance(item, SceneChange):
            out.append((last, item))
    return out


def test_the_night_model_follows_a_grey_picture_within_2_s_and_day_returns(
        street: list[np.ndarray]) -> None:
    queue: FrameQueue[object] = FrameQueue(1000, keep=never_dropped)
    watch = SceneWatch("door", queue, (NIGHT, DAY), "day", None)
    pictures = street[:100] + [grey(f) for f in street[100:200]] + street[200:300]
    for i, image in enumerate(pictures):
        watch.put(frame(i, image))
    (at_night, night), (at_day, day) = changes(queue)
    assert night.model == "night" and "picture grey" in night.why
    assert 100 < at_night <= 120 and 200 < at_day <= 220  # within 2 s at 10 frames/s
    assert day.model == "day" and watch.active == "day"


def test_hours_follow_the_frames_clock() -> None:
    evening = ModelChoice("evening", "m", hours="18:00-22:00")
    queue: FrameQueue[object] = FrameQueue(1000, keep=never_dropped)
    start = dt.datetime(2026, 12, 1, 17, 59, 58).timestamp()
    watch = SceneWatch("door", queue, (evening, DAY), "day", None)
    image = np.zeros((144, 192, 3), np.uint8)
    for i in range(40):  # 17:59:58 to 18:00:02
        watch.put(frame(i, image, start))
    (after, change), = changes(queue)
    assert change.model == "evening" and 20 <= after <= 22


def test_a_tamper_verdict_follows_its_frame_and_a_full_queue_never_drops_it(
        street: list[np.ndarray]) -> None:
    queue: FrameQueue[object] = FrameQueue(4, DropPolicy.DROP_OLDEST, keep=never_dropped)
    watch = SceneWatch("door", queue, (DAY,), "day", TamperDetector(after=2.0))
    dropped = 0
    for i, image in enumerate(street[:150] + [np.full_like(f, 3) for f in street[150:200]]):
        dropped += not watch.put(frame(i, image))
    items = queue.get_all()
    tampered = [x for x in items if isinstance(x, SceneChange)]
    assert dropped > 100 and [c.tampered for c in tampered] == [True]  # kept, not dropped
    assert "blank" in tampered[0].why


def test_a_stream_loss_restarts_the_run_of_changed_pictures(street: list[np.ndarray]) -> None:
    queue: FrameQueue[object] = FrameQueue(1000, keep=never_dropped)
    watch = SceneWatch("door", queue, (DAY,), "day", TamperDetector(after=3.0))
    blank = np.full_like(street[0], 3)
    for i, image in enumerate(street[:120] + [blank] * 25):  # 2.5 s blank: not yet tampered
        watch.put(frame(i, image))
    watch.put(StreamState("door", False, "lost", 0.0, 0.0))
    for i in range(25):  # stream time restarts at 0; another 2.5 s blank
        watch.put(frame(i, blank))
    assert changes(queue) == []
    for i in range(25, 40):
        watch.put(frame(i, blank))
    assert [c.tampered for _, c in changes(queue)] == [True]


def test_a_camera_with_one_model_and_tamper_off_has_no_watch() -> None:
    queue: FrameQueue[object] = FrameQueue(4)
    assert SceneWatch.for_camera("door", CameraConfig(source="x", tamper=False), queue, "default") is None
    assert SceneWatch.for_camera("door", CameraConfig(source="x"), queue, "default") is not None
