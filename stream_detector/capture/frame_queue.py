"""The frame queue between a camera's capture loop and inference: capture never waits; when it is
full, the oldest frame is dropped and counted (a named policy).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

from stream_detector.messages import Frame, SceneChange, StreamState

T = TypeVar("T")


class DropPolicy(Enum):
    DROP_OLDEST = "drop_oldest"  # keep the freshest frames: alerts should be about now
    DROP_NEWEST = "drop_newest"  # keep continuity of what is queued, refuse the new frame


class FrameQueue(Generic[T]):
    """Thread-safe bounded queue that never blocks the producer; drops are counted by policy.

    Items for which `keep(item)` is true (stream-state messages) are never dropped: losing one would
    leave an event open. Queues may share one `cond`, so a consumer serving many queues sleeps until
    any of them gets an item instead of polling.
    """

    def __init__(self, maxsize: int, policy: DropPolicy = DropPolicy.DROP_OLDEST,
                 cond: threading.Condition | None = None,
                 keep: Callable[[T], bool] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = cond or threading.Condition()
        self._keep = keep or (lambda item: False)

    @property
    def cond(self) -> threading.Condition:
        return self._cond

    def put(self, item: T) -> bool:
        """Add an item; returns False when an item (old or this one) was dropped to make room."""
        with self._cond:
            kept = True
            if len(self._items) >= self.maxsize:
                if self.policy is DropPolicy.DROP_NEWEST:
                    if not self._keep(item):
                        self.dropped += 1
                        return False
                else:
                    victim = next((i for i, x in enumerate(self._items) if not self._keep(x)), None)
                    if victim is not None:
                        del self._items[victim]
                        self.dropped += 1
                        kept = False
            self._items.append(item)
            self._cond.notify_all()
            return kept

    def get(self, timeout: float | None = None) -> T | None:
        """Oldest item, waiting up to `timeout` seconds; None if nothing arrived."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def get_all(self) -> list[T]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def is_stream_state(item: Frame | StreamState) -> bool:
    """Stream-state messages must never be dropped from a full frame queue."""
    return isinstance(item, StreamState)


def never_dropped(item: Frame | StreamState | SceneChange) -> bool:
    """Every message but a frame: a lost stream state would leave an event open, a lost scene change
    a camera on the wrong model or its tamper event open."""
    return not isinstance(item, Frame)
