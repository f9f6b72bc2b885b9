"""Bounded buffers between stages, each with a named policy.

`FeatureBank` holds the last T-1 preprocessed frames of each stream and their cached spatial
features, so every frame is encoded once and reused by the T windows that contain it. `FrameQueue`
sits between a camera's capture loop and inference: capture never waits; when full, the oldest frame
is dropped and counted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

from torch import Tensor

T = TypeVar("T")


class DropPolicy(Enum):
    DROP_OLDEST = "drop_oldest"  # keep the freshest frames: alerts should be about now
    DROP_NEWEST = "drop_newest"  # keep continuity of what is queued, refuse the new frame


CALL_FRAMES = 32  # the most frames one model call takes, all cameras together: a bounded call
STREAM_FRAMES = 8  # the most new frames of one camera in one call (8 runs fastest on a CPU)


class FeatureBank:
    """The recent frames and cached features of every stream scored with one model, in one pair of
    tensors, so one model call can score windows of many streams without copying any history.

    Each stream owns a block of `slots` rows used as a ring (frame t at row block * slots + t mod
    slots): room for the `history` frames a window looks back plus up to `new` frames per call.
    Tensors are allocated at the first store (their shape, dtype and device come from the model)
    and grow when streams join; a stream's block is reused once it leaves.
    """

    def __init__(self, history: int, new: int = STREAM_FRAMES) -> None:
        self.history = history
        self.new = new
        self.slots = history + new
        self.frames: Tensor | None = None  # (blocks x slots, C, H, W)
        self.features: Tensor | None = None  # (blocks x slots, F, h, w)
        self._blocks = 0
        self._free: list[int] = []
        self._lock = threading.Lock()  # join/leave may come from a garbage collector's thread

    def join(self) -> int:
        """A block for a new stream."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self._blocks += 1
            return self._blocks - 1

    def leave(self, block: int) -> None:
        with self._lock:
            self._free.append(block)

    def rows(self, block: int, frames: list[int]) -> list[int]:
        """Rows of a stream's frames (by their index in the stream)."""
        return [block * self.slots + t % self.slots for t in frames]

    def store(self, rows: Tensor, frames: Tensor, features: Tensor) -> None:
        """Write new frames and their features at `rows` (a stream's next ring positions)."""
        need = (self._blocks or 1) * self.slots
        if (self.frames is None or self.features is None or self.frames.shape[0] < need
                or self.frames.shape[1:] != frames.shape[1:] or self.features.dtype != features.dtype
                or self.frames.device != frames.device):
            self._grow(need, frames, features)
        assert self.frames is not None and self.features is not None
        self.frames.index_copy_(0, rows, frames)
        self.features.index_copy_(0, rows, features)

    def _grow(self, need: int, frames: Tensor, features: Tensor) -> None:
        old_f, old_x = self.features, self.frames
        size = max(need, 2 * old_x.shape[0] if old_x is not None else 0)
        self.frames = frames.new_zeros((size, *frames.shape[1:]))
        self.features = features.new_zeros((size, *features.shape[1:]))
        if (old_x is not None and old_f is not None and old_x.shape[1:] == frames.shape[1:]
                and old_f.dtype == features.dtype and old_x.device == frames.device):
            self.frames[:old_x.shape[0]] = old_x  # blocks keep their rows
            self.features[:old_f.shape[0]] = old_f


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
