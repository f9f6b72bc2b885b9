"""Snapshots: boxes scaled onto the main frame, and the fallback to the scored frame said once."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from stream_detector.capture import (
    FrameHistory,
)
from stream_detector.config import DEFAULT_MODEL
from stream_detector.daemon import load_camera_model
from stream_detector.messages import Box, Event, Frame, Peak
from stream_detector.outputs import renderer_for, scale_box


def test_scale_box_maps_scored_pixels_onto_the_main_frame() -> None:
    assert scale_box(Box(10, 20, 101, 288), 2.0, 2.0, 768, 576) == Box(20, 40, 202, 576)
    full = Box(0, 0, 1920, 1080)
    assert scale_box(Box(0, 0, 384, 216), 1920 / 384, 1080 / 216, 1920, 1080) == full
    assert scale_box(None, 2.0, 2.0, 768, 576) is None


def test_snapshot_falls_back_to_the_scored_frame_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    model = load_camera_model("cameras.door.model", str(DEFAULT_MODEL), "cpu", "test")
    history = FrameHistory()
    render = renderer_for("door", model, 1.0, history)
    cells = np.zeros(model.slicer.grid, np.float32)
    peak = Peak(5.0, np.zeros((288, 384, 3), np.uint8), cells, Box(0, 0, 96, 72), time.monotonic())
    event = Event("e1", "door", "start", time.time(), 0.0, None, None, 5.0, 0, peak.box, 5.0)
    with caplog.at_level(logging.WARNING, "stream_detector.outputs.snapshots"):
        shapes = [decoded(render(peak, event)).shape for _ in range(3)]
    assert shapes == [(288, 384, 3)] * 3
    assert len([r for r in caplog.records if "no main-stream frame" in r.message]) == 1
    history.put(Frame("door", 0, 0.0, time.time(), peak.mono_time or 0.0,
                      np.zeros((576, 768, 3), np.uint8)))
    jpeg = render(peak, event)
    assert decoded(jpeg).shape == (576, 768, 3)
    later = Peak(5.0, peak.image, cells, peak.box, (peak.mono_time or 0.0) + 0.5)
    history.put(Frame("door", 1, 0.5, time.time(), later.mono_time or 0.0,
                      np.zeros((720, 1280, 3), np.uint8)))  # 16:9 main, 4:3 scored
    with caplog.at_level(logging.WARNING, "stream_detector.outputs.snapshots"):
        assert [decoded(render(later, event)).shape for _ in range(2)] == [(720, 1280, 3)] * 2
    assert len([r for r in caplog.records if "aspect ratio" in r.message]) == 1


def decoded(jpeg: bytes | None) -> np.ndarray:
    assert jpeg, "nothing rendered"
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
