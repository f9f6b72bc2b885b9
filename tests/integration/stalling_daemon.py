"""`stream-detector` whose scoring wedges after a few model calls, as a deadlocked driver would.

Test code, not a flag in the daemon: the fault is injected from outside, then the real CLI runs.
"""

from __future__ import annotations

import sys
import threading

from stream_detector import cli
from stream_detector.detect import FrameScorer

_score = FrameScorer.score
_calls = [0]


def _wedging_score(self: FrameScorer, frames: list) -> list:  # type: ignore[type-arg]
    _calls[0] += 1
    if _calls[0] > 10:
        threading.Event().wait()  # never returns
    return _score(self, frames)


FrameScorer.score = _wedging_score  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
