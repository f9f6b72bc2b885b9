"""Fitting: random segments within the planned steps, calibration blocks held
back and spread over the footage.
"""

from __future__ import annotations

import numpy as np
import pytest


def test_random_segment_offsets_never_exceed_the_planned_steps() -> None:
    """The LR schedule is sized from offset-0 segment counts; a random offset must not add steps."""
    import random

    from stream_detector.offline.fit import Clip, _segments

    clips = [Clip("c", np.zeros((n, 1, 8, 8), np.float32), (8, 8)) for n in (120, 150, 17, 33, 90)]
    for length, stride in ((15, 8), (19, 8), (11, 4)):
        most = sum(len(range(0, len(c.frames) - length + 1, stride)) for c in clips)
        assert max(len(_segments(clips, length, stride, random.Random(i))) for i in range(100)) <= most


def test_calibration_blocks_are_held_back_and_spread_over_the_footage() -> None:
    from stream_detector.offline.fit import plan_blocks

    plan = plan_blocks([180] * 16, cap=6000, holdout=0.25)  # sixteen short clips, as in UCSD Ped2
    held = [i for i, p in enumerate(plan) if p[3]]
    assert held == [3, 7, 11, 15]
    long = plan_blocks([36000], cap=6000, holdout=0.25)  # one hour-long recording, capped
    assert sum(e - s for _, s, e, _ in long) <= 6000
    assert long[-1][2] > 30000  # the end of the recording is sampled too, not only its start
    cal = [p for p in long if p[3]]
    assert 0 < len(cal) < len(long) and cal[0][1] < 18000 < cal[-1][1]
    one = plan_blocks([100], cap=6000, holdout=0.25)  # a single short clip is split in time
    assert one == [(0, 0, 75, False), (0, 75, 100, True)]
    assert not any(p[3] for p in plan_blocks([180] * 4, cap=6000, holdout=0.0))
