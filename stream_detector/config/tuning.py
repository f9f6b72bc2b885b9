"""`[tune]`: the daemon tuning its cameras' models on a schedule with the clips of the events
operators marked false_alarm (what `stream-detector tune` does by hand)."""

from __future__ import annotations

from dataclasses import dataclass

from stream_detector.config.loading import check
from stream_detector.config.scene import parse_time


@dataclass(frozen=True)
class TuneConfig:
    enabled: bool = False  # off by default: an operator opts in (per camera: cameras.NAME.tune)
    at: str = "03:00"  # local time of day to look for new verdicts, once a day
    interval: float = 0.0  # seconds; > 0: every `interval` seconds instead of daily at `at`
    min_false_alarms: int = 1  # new false alarms a camera's model needs before it is tuned again
    keep: int = 3  # tuned versions kept per camera model (the newest; the configured one always)

    def __post_init__(self) -> None:
        try:
            parse_time(self.at)
        except ValueError as exc:
            check(False, "at", f"{self.at!r}: {exc}")
        check(self.interval == 0 or 1 <= self.interval <= 30 * 86400, "interval",
               "must be 0 (daily at `at`) or in 1..2592000 seconds")
        check(1 <= self.min_false_alarms <= 10000, "min_false_alarms", "must be in 1..10000")
        check(1 <= self.keep <= 100, "keep", "must be in 1..100")
