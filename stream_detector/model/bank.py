"""The feature bank: every stream scored with one model keeps its recent frames and their cached
spatial features in one pair of tensors, so each frame is encoded once and reused by the T windows
that contain it, and one model call scores windows of many streams without copying history.
"""

from __future__ import annotations

import threading

from torch import Tensor

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

