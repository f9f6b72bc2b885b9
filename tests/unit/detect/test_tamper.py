"""The tamper detector on real footage (vtest.avi at 10 frames/s, a sample every 0.25 s): a street
that is mirrored (the camera turned), covered, blurred or darkened is tampered `after` seconds
later and clears `after` seconds after it returns; the street itself, all 79 s of it, never is."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from stream_detector.detect import TamperDetector, Verdict, measure

Edit = Callable[[np.ndarray], np.ndarray]


def run(detector: TamperDetector, frames: list[np.ndarray], start: float = 0.0,
        key: object = ("default", "colour")) -> list[tuple[float, Verdict]]:
    """Feed every 2.5th frame (0.25 s at 10 frames/s); the verdicts with their time."""
    out = []
    for i in range(0, len(frames) * 2, 5):
        t = start + i / 20
        if (v := detector.observe(key, measure(frames[i // 2]), t)) is not None:
            out.append((t, v))
    return out


def test_the_street_itself_is_never_tampered(street: list[np.ndarray]) -> None:
    assert run(TamperDetector(after=5.0), street) == []


@pytest.mark.parametrize(("name", "edit", "why"), [
    ("turned", lambda f: cv2.flip(f, 1), "the scene changed"),
    ("covered", lambda f: np.full_like(f, 4), "blank"),
    ("refocused", lambda f: cv2.GaussianBlur(f, (0, 0), 2.5), "blurred"),
    ("much darker", lambda f: (f * 0.2).astype(np.uint8), "much darker"),
])
def test_a_changed_picture_is_tampered_after_5_s_and_clears_5_s_after_it_returns(
        street: list[np.ndarray], name: str, edit: Edit, why: str) -> None:
    detector = TamperDetector(after=5.0)
    assert run(detector, street[:200]) == []  # 20 s: the reference is learned in the first 10
    (t_on, on), = run(detector, [edit(f) for f in street[200:300]], start=20.0)
    assert on.tampered and why in on.why and on.difference > 0.5, on
    assert 5.0 <= t_on - 20.0 <= 5.5
    (t_off, off), = run(detector, street[300:500], start=30.0)  # 20 s of the street again
    assert not off.tampered and off.why == "the picture matches the scene again"
    assert 5.0 <= t_off - 30.0 <= 5.5


def test_a_new_key_is_learned_from_the_known_scene_only(street: list[np.ndarray]) -> None:
    """Night (grey, another key) is learned when it still shows the street; a mirrored street
    that turns grey is tampered instead of learned."""
    def grey(f: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)

    detector = TamperDetector(after=5.0)
    run(detector, street[:150])
    assert run(detector, [grey(f) for f in street[150:500]], 15.0, ("default", "grey")) == []
    other = TamperDetector(after=5.0)
    run(other, street[:150])
    verdicts = run(other, [grey(cv2.flip(f, 1)) for f in street[150:300]], 15.0, ("default", "grey"))
    assert [v.tampered for _, v in verdicts] == [True]
