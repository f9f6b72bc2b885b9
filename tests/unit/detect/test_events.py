"""Scores to events: start, update and end with hysteresis, the peak, the box, the policy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stream_detector.detect import EventPolicy, EventTracker
from stream_detector.messages import Box, FrameScore


def score(t: float, value: float, box: Box | None = None, warmup: bool = False) -> FrameScore:
    return FrameScore("cam", int(t * 10), t, 1000 + t, t, value, value, warmup, np.zeros((1, 1)), box)


def run(tracker: EventTracker, values: list[float]) -> list[tuple[str, float]]:
    out = []
    for i, v in enumerate(values):
        out += [(e.type, e.peak_score) for e in tracker.observe(score(i / 10, v, Box(i, 0, i + 1, 1)))]
    return out


def tracker(**kw: float) -> EventTracker:
    ids = (f"e{i}" for i in itertools.count())
    policy = EventPolicy(**{"threshold": 5.0, "low_threshold": 3.0, "min_duration": 0.2,
                            "cooldown": 0.3, "update_interval": 0.5, **kw})
    return EventTracker("cam", policy, new_id=lambda: next(ids))


def test_short_spike_does_not_start_an_event() -> None:
    assert run(tracker(), [0, 9, 9, 0, 0, 9, 0]) == []


def test_start_update_end_with_hysteresis_and_peak() -> None:
    t = tracker()
    values = [0, 6, 6, 7, 9, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 0]
    events = run(t, values)
    assert [e[0] for e in events] == ["start", "update", "end"]
    assert events[-1][1] == 9  # peak
    assert t.active is None


def test_event_start_time_is_when_score_first_crossed() -> None:
    t = tracker()
    events = []
    for i, v in enumerate([0, 6, 6, 6, 6]):
        events += t.observe(score(i / 10, v))
    assert events[0].start_stream == 0.1 and events[0].id == "e0"


def test_box_is_union_while_over_low_threshold() -> None:
    t = tracker()
    for i, v in enumerate([6, 6, 6, 6]):
        t.observe(score(i / 10, v, Box(10 * i, 0, 10 * i + 5, 5)))
    assert t.active is not None and t.active.box == Box(0, 0, 35, 5)


def test_close_ends_an_open_event_and_warmup_never_starts() -> None:
    t = tracker()
    for i in range(5):
        t.observe(score(i / 10, 9, warmup=True))
    assert t.active is None
    run(t, [9, 9, 9, 9])
    (ended,) = t.close(2000.0, 1.0)
    assert ended.type == "end" and ended.end_stream == 1.0 and t.close(0, 0) == []


def test_policy_low_threshold_stays_below_the_threshold_whatever_its_sign() -> None:
    from stream_detector.config import CameraConfig
    from stream_detector.detect import policy_for

    cam = CameraConfig(source="x", low_threshold_ratio=0.8, min_duration=0.5, cooldown=3.0)
    assert policy_for(2.5, cam).low_threshold == pytest.approx(2.0)  # ratio x threshold, as before
    negative = policy_for(-0.5, cam)  # a threshold in z-score units may sit below 0
    assert negative.low_threshold == pytest.approx(-0.6) and negative.min_duration == 0.5
    EventTracker("x", negative)  # a tracker accepts it (low <= threshold)


def test_an_update_is_stamped_with_its_own_time() -> None:
    tracker = EventTracker("door", EventPolicy(1.0, 0.8, min_duration=0.0, cooldown=1.0,
                                               update_interval=2.0))
    def score(i: int, value: float) -> FrameScore:
        return FrameScore("door", i, i * 1.0, 1000.0 + i, float(i), value, value, False, np.zeros((1, 1)))

    events = [e for i in range(6) for e in tracker.observe(score(i, 5.0))]
    assert [e.type for e in events] == ["start", "update", "update"]
    assert [e.start_wall for e in events] == [1000.0] * 3
    assert [e.update_wall for e in events] == [None, 1002.0, 1004.0]
