"""The scene measure on real footage: a street's layout matches itself and not its mirror image;
a grey picture reads grey; a blank one is flat; the picture class waits out a passing flicker."""

from __future__ import annotations

import cv2
import numpy as np

from stream_detector.detect import PictureClass, measure, similarity
from stream_detector.detect.scene import COLOUR_ABOVE, GREY_BELOW


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def test_a_street_matches_itself_later_and_not_mirrored_or_blank(street: list[np.ndarray]) -> None:
    now, later = measure(street[100]), measure(street[600])  # a minute apart, other walkers
    assert similarity(now.edges, later.edges) > 0.7
    assert similarity(now.edges, measure(cv2.flip(street[600], 1)).edges) < 0.4
    blank = measure(np.full_like(street[0], 7))
    assert blank.flat and not now.flat and similarity(blank.edges, now.edges) == 0.0
    assert measure(cv2.GaussianBlur(street[100], (0, 0), 2)).sharpness < 0.5 * now.sharpness


def test_colour_and_grey_pictures_read_apart_at_any_exposure(street: list[np.ndarray]) -> None:
    frame = street[300]
    assert measure(frame).colour > 2 * COLOUR_ABOVE
    assert measure((frame * 0.2).astype(np.uint8)).colour > COLOUR_ABOVE  # dusk is still colour
    assert measure(grey(frame)).colour < GREY_BELOW / 2
    assert measure(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)).colour == 0.0  # a 1-channel frame


def test_the_picture_class_changes_only_after_it_held_for_a_second() -> None:
    picture = PictureClass(hold=1.0)
    assert picture.update(0.3, 0.0) == "colour"  # the first measure decides at once
    assert picture.update(0.0, 0.25) == "colour"
    assert picture.update(0.3, 0.5) == "colour"  # a flicker of grey: the run starts again
    states = [picture.update(0.0, 0.75 + i * 0.25) for i in range(6)]
    assert states == ["colour"] * 4 + ["grey"] * 2  # grey from 0.75 s, decided at 1.75 s
    assert picture.update(0.065, 2.5) == "grey"  # between the bounds: no change
