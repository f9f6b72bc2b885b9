"""The spacetime slicer: cuts a window of T frames into time slices and space slices.

A *time slice* is one location's signal across the T frames (the temporal branch convolves along it);
a *space slice* (cell) is one region of a frame, `cell` pixels square, every `stride` pixels, edge
cells shifted inward so the grid covers the frame exactly. The slicer owns this geometry: which
frames make a window, which pixels make a cell, and how cells map back to source-frame boxes.
"""

from __future__ import annotations

import cv2
import numpy as np

from stream_detector.messages import Box


def _starts(length: int, cell: int, stride: int) -> list[int]:
    if cell >= length:
        return [0]
    starts = list(range(0, length - cell + 1, stride))
    if starts[-1] + cell < length:  # edge cell, aligned to the border so no pixel goes unjudged
        starts.append(length - cell)
    return starts


class SpacetimeSlicer:
    """Window and grid geometry for one working resolution."""

    def __init__(self, width: int, height: int, window: int, cell: int, stride: int) -> None:
        self.width = width
        self.height = height
        self.window = window
        self.cell = cell
        self.stride = stride
        self.row_starts = _starts(height, cell, stride)
        self.col_starts = _starts(width, cell, stride)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of space slices."""
        return len(self.row_starts), len(self.col_starts)

    def cell_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-row (y0, y1) and per-column (x0, x1) working-pixel bounds, right/bottom exclusive."""
        ys = np.asarray(self.row_starts, dtype=np.int64)
        xs = np.asarray(self.col_starts, dtype=np.int64)
        return ys, np.minimum(ys + self.cell, self.height), xs, np.minimum(xs + self.cell, self.width)

    def window_indices(self, t: int) -> list[int]:
        """Frame indices of the window ending at frame t; before T frames exist, frame 0 pads it.

        Only frames <= t are used, so a score computed from this window is causal.
        """
        return [max(0, t - self.window + 1 + i) for i in range(self.window)]

    def is_warmup(self, t: int) -> bool:
        return t < self.window - 1

    def cell_box(self, row: int, col: int, source_width: int, source_height: int) -> Box:
        """A cell's box in source-frame pixels."""
        sx = source_width / self.width
        sy = source_height / self.height
        y0, x0 = self.row_starts[row], self.col_starts[col]
        y1, x1 = min(y0 + self.cell, self.height), min(x0 + self.cell, self.width)
        return Box(
            int(np.floor(x0 * sx)), int(np.floor(y0 * sy)),
            min(source_width, int(np.ceil(x1 * sx))), min(source_height, int(np.ceil(y1 * sy))),
        )

    def box_of(self, mask: np.ndarray, source_width: int, source_height: int) -> Box | None:
        """Bounding box (source pixels) of the cells set in a (rows, cols) boolean mask."""
        if mask.shape != self.grid:
            raise ValueError(f"mask shape {mask.shape} does not match grid {self.grid}")
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return None
        a = self.cell_box(int(rows.min()), int(cols.min()), source_width, source_height)
        b = self.cell_box(int(rows.max()), int(cols.max()), source_width, source_height)
        return Box(a.x0, a.y0, b.x1, b.y1)

    def heatmap(self, cells: np.ndarray, source_width: int, source_height: int) -> np.ndarray:
        """Per-pixel map (source size, float32): each pixel takes the max score of the cells on it."""
        out = np.full((self.height, self.width), -np.inf, dtype=np.float32)
        for r, y0 in enumerate(self.row_starts):
            for c, x0 in enumerate(self.col_starts):
                view = out[y0:y0 + self.cell, x0:x0 + self.cell]
                np.maximum(view, cells[r, c], out=view)
        return cv2.resize(out, (source_width, source_height), interpolation=cv2.INTER_NEAREST)
