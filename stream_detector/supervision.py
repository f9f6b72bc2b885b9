"""Heartbeats: each daemon thread beats; the daemon is healthy only while its critical threads do.

"Healthy" must mean the threads that do the work are turning, not that the process exists: systemd's
watchdog and /healthz read it, so a wedged worker gets the daemon restarted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class Heartbeats:
    """Last beat per thread name, on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def beater(self, name: str) -> Callable[[], None]:
        """The callable a thread calls on each turn of its loop (beats once now)."""
        def beat() -> None:
            now = self._clock()
            with self._lock:
                self._last[name] = now
        beat()
        return beat

    def forget(self, name: str) -> None:
        with self._lock:
            self._last.pop(name, None)

    def ages(self) -> dict[str, float]:
        now = self._clock()
        with self._lock:
            return {name: round(now - t, 3) for name, t in self._last.items()}

    def check(self, critical: Iterable[str], max_age: float) -> tuple[bool, dict[str, Any]]:
        """(all critical threads beat within `max_age` s, detail naming the stale ones)."""
        ages = self.ages()
        stale = sorted(n for n in critical if ages.get(n, float("inf")) > max_age)
        return not stale, {"stale": stale, "threads": ages}
