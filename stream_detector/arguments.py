"""Argument types of the command line: durations, counts and numbers checked as argparse parses
them, so that a bad value is argparse's one line naming the option."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # durations and ages: 90s, 20m, 2h, 1d


def duration(text: str) -> float:
    """An argparse type: 90, 90s, 20m, 2h or 1d, up to 30 days."""
    number, unit = (text[:-1], UNITS[text[-1]]) if text[-1:] in UNITS else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 20m, 2h or 1d") from None
    if not (math.isfinite(value) and 1 <= value <= 30 * 86400):
        raise argparse.ArgumentTypeError(f"{text} is not between 1s and 30d")
    return value


duration.__name__ = "duration"


def count(lowest: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `lowest` (argparse names the option in its one line)."""
    def parse(text: str) -> int:
        value = int(text)  # ValueError: argparse says "invalid ... value"
        if not lowest <= value <= 10**9:
            raise argparse.ArgumentTypeError(f"{value} is not in {lowest}..{10**9}")
        return value
    parse.__name__ = "integer"
    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)  # ValueError: argparse says "invalid number value"
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


positive.__name__ = "number"
