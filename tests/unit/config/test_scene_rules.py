"""A camera's models and their rules: the first entry whose rule holds is active, else the last;
hours wrap midnight; a picture rule holds only once the picture is known."""

from __future__ import annotations

import datetime as dt

import pytest

from stream_detector.config import CameraConfig, ModelChoice, choose, parse_hours

NIGHT = ModelChoice("night", "models/night", picture="grey")
EVENING = ModelChoice("evening", "models/evening", hours="18:00-22:00")
DAY = ModelChoice("day", "models/day")


def at(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def test_the_first_rule_that_holds_wins_and_the_last_entry_is_the_fallback() -> None:
    choices = (NIGHT, EVENING, DAY)
    assert choose(choices, "grey", at("12:00")) == "night"
    assert choose(choices, "colour", at("19:00")) == "evening"
    assert choose(choices, "colour", at("12:00")) == "day"
    assert choose(choices, None, at("12:00")) == "day"  # the picture not yet measured
    assert choose((NIGHT, EVENING), "colour", at("12:00")) == "evening"  # none holds: the last


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("19:00-07:00", ["19:00", "23:59", "00:00", "06:59"], ["07:00", "12:00", "18:59"]),
    ("07:30-19:00", ["07:30", "18:59"], ["07:29", "19:00", "00:00"]),
])
def test_hours_are_local_time_start_inclusive_and_may_wrap_midnight(
        text: str, inside: list[str], outside: list[str]) -> None:
    span = parse_hours(text)
    assert all(at(t) in span for t in inside) and not any(at(t) in span for t in outside)
    assert str(span) == text


def test_a_rule_on_both_picture_and_hours_needs_both() -> None:
    both = ModelChoice("ir", "m", picture="grey", hours="20:00-06:00")
    assert both.holds("grey", at("21:00")) is True
    assert both.holds("grey", at("12:00")) is False
    assert both.holds(None, at("21:00")) is None  # depends on a picture not yet known
    assert both.rule == "picture grey, hours 20:00-06:00" and DAY.rule == "always"


def test_a_camera_with_one_model_names_it_default() -> None:
    assert CameraConfig(source="demo").model_choices[0].name == "default"
    assert CameraConfig(source="demo", models=(NIGHT, DAY)).model_choices == (NIGHT, DAY)
