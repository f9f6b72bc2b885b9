"""Health: each daemon thread beats a heartbeat, and the daemon is healthy only while its critical
threads do; systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1), which reports it.

"Healthy" must mean the threads that do the work are turning, not that the process exists: systemd's
watchdog and /healthz read it, so a wedged worker gets the daemon restarted.
"""

from __future__ import annotations

import os
import socket
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


def notify_systemd(message: str) -> bool:
    """Send one notification over $NOTIFY_SOCKET (stdlib only); False when there is no socket to
    send it to: not started by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False
