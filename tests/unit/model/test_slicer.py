import numpy as np
import pytest

from stream_detector.messages import Box
from stream_detector.model import SpacetimeSlicer


def test_grid_covers_frame_with_edge_cells_aligned_to_border() -> None:
    s = SpacetimeSlicer(width=70, height=48, window=4, cell=16, stride=8)
    assert s.row_starts == [0, 8, 16, 24, 32]
    assert s.col_starts == [0, 8, 16, 24, 32, 40, 48, 54]  # 54 = 70 - 16: the edge cell
    y0, y1, x0, x1 = s.cell_edges()
    assert y1.max() == 48 and x1.max() == 70 and (x1 - x0 == 16).all()
    assert s.grid == (5, 8)


def test_cell_larger_than_frame_gives_one_cell() -> None:
    s = SpacetimeSlicer(width=12, height=10, window=3, cell=16, stride=8)
    assert s.grid == (1, 1)
    assert s.cell_box(0, 0, 120, 100) == Box(0, 0, 120, 100)


def test_cell_box_scales_to_source_pixels() -> None:
    s = SpacetimeSlicer(width=64, height=48, window=4, cell=16, stride=8)
    assert s.cell_box(0, 0, 640, 480) == Box(0, 0, 160, 160)
    assert s.cell_box(1, 2, 640, 480) == Box(160, 80, 320, 240)
    last = s.cell_box(s.grid[0] - 1, s.grid[1] - 1, 640, 480)
    assert (last.x1, last.y1) == (640, 480)


def test_box_of_mask_is_union_of_cells() -> None:
    s = SpacetimeSlicer(width=64, height=48, window=4, cell=16, stride=8)
    mask = np.zeros(s.grid, bool)
    assert s.box_of(mask, 64, 48) is None
    mask[1, 2] = mask[3, 4] = True
    assert s.box_of(mask, 64, 48) == Box(16, 8, 48, 40)
    with pytest.raises(ValueError):
        s.box_of(np.zeros((2, 2), bool), 64, 48)


def test_window_indices_are_causal_and_padded_at_start() -> None:
    s = SpacetimeSlicer(width=64, height=48, window=4, cell=16, stride=8)
    assert s.window_indices(0) == [0, 0, 0, 0]
    assert s.window_indices(2) == [0, 0, 1, 2]
    assert s.window_indices(10) == [7, 8, 9, 10]
    assert s.is_warmup(2) and not s.is_warmup(3)
    assert all(max(s.window_indices(t)) == t for t in range(20))


def test_heatmap_takes_max_of_overlapping_cells() -> None:
    s = SpacetimeSlicer(width=32, height=16, window=4, cell=16, stride=8)
    cells = np.array([[1.0, 5.0, 2.0]], dtype=np.float32)
    heat = s.heatmap(cells, 32, 16)
    assert heat[0, 0] == 1.0 and heat[0, 10] == 5.0 and heat[0, 20] == 5.0 and heat[0, 30] == 2.0
