"""Progress lines for long work (decoding, training, evaluation) on stderr.

On a terminal the line is rewritten in place; otherwise (CI, logs) it prints at most every few seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.label = label
        self.total = max(1, total)
        self.stream = stream or sys.stderr
        self.every = every
        self.start = time.monotonic()
        self._last_print = 0.0
        self._tty = self.stream.isatty()

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and not self._tty and now - self._last_print < self.every and done < self.total:
            return
        self._last_print = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        width = 24
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        line = (f"{self.label} [{bar}] {done}/{self.total} {note} "
                f"elapsed {_clock(elapsed)} eta {_clock(eta)}")
        if self._tty:
            self.stream.write("\r" + line.ljust(100))
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
