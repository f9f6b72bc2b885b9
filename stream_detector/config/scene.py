"""A camera's models and the rules that choose between them (`[[cameras.NAME.models]]`): by what
the picture is (grey infrared or colour, measured on the frames) and by the time of day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stream_detector.config.loading import check

PICTURES = ("grey", "colour")
MODEL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class Hours:
    """A span of the day, local time: start inclusive, end exclusive; it may wrap midnight."""

    start: dt.time
    end: dt.time

    def __contains__(self, moment: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_time(text: str) -> dt.time:
    """"07:30" -> a time of day; ValueError with the reason otherwise."""
    try:
        return dt.datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise ValueError("expected HH:MM (24-hour clock)") from None


def parse_hours(text: str) -> Hours:
    """"19:00-07:30" -> Hours; ValueError with the reason otherwise."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError("expected HH:MM-HH:MM")
    try:
        start, end = (parse_time(p) for p in parts)
    except ValueError:
        raise ValueError("expected HH:MM-HH:MM (24-hour clock)") from None
    if start == end:
        raise ValueError("start and end are the same time (leave hours empty for all day)")
    return Hours(start, end)


@dataclass(frozen=True)
class ModelChoice:
    """One of a camera's models and when it scores. Entries are tried in order: the first whose
    rule holds is active; an entry without a rule always holds; if none holds, the last one."""

    name: str  # labels the model in events (`model`) and metrics (stream_detector_active_model)
    model: str  # model directory
    picture: str = ""  # "grey" (infrared at night), "colour", or empty: any picture
    hours: str = ""  # "HH:MM-HH:MM" local time, may wrap midnight; empty: any time

    def __post_init__(self) -> None:
        check(bool(self.name) and set(self.name) <= MODEL_NAME_CHARS, "name",
               "model names use letters, digits, '_' and '-' only")
        check(bool(self.model), "model", "must not be empty")
        check(self.picture in ("", *PICTURES), "picture", "must be grey, colour or empty (any picture)")
        if self.hours:
            try:
                parse_hours(self.hours)
            except ValueError as exc:
                check(False, "hours", f"{self.hours!r}: {exc}")

    @property
    def span(self) -> Hours | None:
        return parse_hours(self.hours) if self.hours else None

    @property
    def rule(self) -> str:
        """The rule in words, for logs and check-config."""
        parts = [f"picture {self.picture}"] if self.picture else []
        parts += [f"hours {self.hours}"] if self.hours else []
        return ", ".join(parts) or "always"

    def holds(self, picture: str | None, moment: dt.time) -> bool | None:
        """Whether the rule holds for this picture and time of day; None while it depends on a
        picture not yet known."""
        span = self.span
        if span is not None and moment not in span:
            return False
        if self.picture and picture is None:
            return None
        return not self.picture or self.picture == picture


def choose(choices: tuple[ModelChoice, ...], picture: str | None, moment: dt.time) -> str:
    """The active entry's name: the first whose rule holds, else the last. A rule that needs a
    picture not yet measured does not hold."""
    for choice in choices:
        if choice.holds(picture, moment):
            return choice.name
    return choices[-1].name


def explain(choices: tuple[ModelChoice, ...], picture: str | None, moment: dt.time) -> str:
    """Which entry would be active, and why, in words (`check-config`); with the picture unknown
    and a picture rule that matters, both answers."""
    when = f"at {moment:%H:%M}"
    if picture is None and any(c.picture for c in choices):
        by = {p: choose(choices, p, moment) for p in PICTURES}
        if by["grey"] != by["colour"]:
            return (f"{by['colour']} if the picture is colour, {by['grey']} if it is grey ({when}; "
                    f"check-config --probe measures the picture)")
    name = choose(choices, picture, moment)
    chosen = next(c for c in choices if c.name == name)
    why = chosen.rule if chosen.holds(picture, moment) else "no rule holds: the last entry"
    return f"{name} ({why}; {when}" + (f", the picture is {picture})" if picture else ")")
