"""Footage split by a camera's model rules: a grey recording goes to the night model, a colour one
to the day model; hours are read from the file's name; a model without footage is refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_detector.config import ModelChoice
from stream_detector.errors import SourceError
from stream_detector.offline.split import recorded_at, split_footage

NIGHT = ModelChoice("night", "m/night", picture="grey")
EVENING = ModelChoice("evening", "m/evening", hours="18:00-22:00")
DAY = ModelChoice("day", "m/day")


def clip(path: Path, street: list[np.ndarray], grey: bool) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (192, 144))
    for frame in street[:20]:
        if grey:
            frame = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        writer.write(frame)
    writer.release()
    return path


def test_each_recording_goes_to_the_model_whose_rule_holds(tmp_path: Path,
                                                           street: list[np.ndarray]) -> None:
    noon = clip(tmp_path / "door-20261201T120000.avi", street, grey=False)
    evening = clip(tmp_path / "door-20261201T190500.avi", street, grey=False)
    night = clip(tmp_path / "door-20261201T230000.avi", street, grey=True)
    parts = split_footage([noon, evening, night], (NIGHT, EVENING, DAY), "F: cameras.door")
    assert parts == {"night": [night], "evening": [evening], "day": [noon]}
    assert recorded_at(night) is not None and recorded_at(night).hour == 23  # type: ignore[union-attr]


def test_a_model_without_footage_and_a_name_without_its_time_are_refused(
        tmp_path: Path, street: list[np.ndarray]) -> None:
    noon = clip(tmp_path / "door-20261201T120000.avi", street, grey=False)
    with pytest.raises(SourceError, match=r"F\.models\[0\] \(night\): no footage matches its rule "
                                          r"\(picture grey\)"):
        split_footage([noon], (NIGHT, DAY), "F")
    plain = clip(tmp_path / "noon.avi", street, grey=False)
    with pytest.raises(SourceError, match="no recording time in its name"):
        split_footage([plain], (EVENING, DAY), "F")

