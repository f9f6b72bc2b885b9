"""Recorded footage split by a camera's model rules (`fit --split`): each file goes to the model
whose rule holds for it, the picture measured on frames spread through the file (grey or colour),
the time of day read from its name (as `record` names files: CAMERA-YYYYmmddTHHMMSS.avi).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import cv2

from stream_detector.capture import open_capture
from stream_detector.config import ModelChoice, choose
from stream_detector.detect import measure, picture_of
from stream_detector.errors import SourceError

SAMPLES = 9  # frames measured per file: the picture class most of them show decides
_STAMP = re.compile(r"-(\d{8}T\d{6})$")


def recorded_at(path: Path) -> dt.datetime | None:
    """The local time a recording began, from its name; None for a name without it."""
    found = _STAMP.search(path.stem)
    return dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%S") if found else None


def picture_of_file(path: Path) -> str | None:
    """"grey" or "colour": what most of SAMPLES frames spread through the file show."""
    cap = open_capture(path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        seen: Counter[str | None] = Counter()
        for i in range(SAMPLES):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i * max(1, count - 1) // max(1, SAMPLES - 1))
            ok, frame = cap.read()
            if ok and frame is not None:
                seen[picture_of(measure(frame).colour)] += 1
    finally:
        cap.release()
    if not seen:
        raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
    return seen.most_common(1)[0][0]


def split_footage(files: list[Path], choices: tuple[ModelChoice, ...],
                  where: str) -> dict[str, list[Path]]:
    """Each of the camera's models (by name, in order) with the files its rule selects; every
    model must get some: a model without footage is a SourceError naming its entry (`where`)."""
    needs_time = any(c.hours for c in choices)
    out: dict[str, list[Path]] = {c.name: [] for c in choices}
    for path in files:
        began = recorded_at(path)
        if needs_time and began is None:
            raise SourceError(f"{path}: no recording time in its name (CAMERA-YYYYmmddTHHMMSS, "
                              f"as `record` names files): the hours rules need it")
        moment = (began or dt.datetime.now()).time()
        out[choose(choices, picture_of_file(path), moment)].append(path)
    for i, choice in enumerate(choices):
        if not out[choice.name]:
            raise SourceError(f"{where}.models[{i}] ({choice.name}): no footage matches its rule "
                              f"({choice.rule}); record when it holds too (record --every 1h "
                              f"--duration 24h covers a day and a night)")
    return out
