"""The scoring module exported with the network: per-cell cues, their baselines, and the frame score
of the most anomalous region. Everything the score depends on is a buffer of this module, so the
baselines cannot drift from the weights they were measured with.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stream_detector.model.network import SpacetimeNet, gather_window

# Per-cell evidence. The first four are motion cues: the network's errors (appearance, motion
# predicted from appearance), the speed of what moves, and how unusual its heading is there. The
# last two are scene cues, of things that stand: how much of the cell is foreground, and how long
# the longest-standing thing in it has stood still (seconds).
CUES = ("appearance_error", "motion_error", "speed", "heading", "occupancy", "dwell")
LEARNED = (True, True, False, False, False, False)  # judged on held-back footage only
STATIC = (False, False, False, False, True, True)  # scored cell by cell, not over a region
HEADING_BINS = 8


class DetectorOutput(NamedTuple):
    prediction: Tensor  # (B, C', H, W) the model's guess of the target: frame and flow, or flow only
    cell_error: Tensor  # (B, K, rows, cols) raw per-cell cues, K = len(CUES)
    cell_score: Tensor  # (B, rows, cols) cues against the per-cell baseline, combined (0 ~ normal)
    frame_score: Tensor  # (B,) the most anomalous region's score


class SpacetimeDetector(nn.Module):
    """Network + scene prior + per-cell baselines + cue weights + calibration, exported together.

    Frames carry appearance, then `motion_channels` of flow, then `scene_channels` (foreground and
    dwell, see detect/foreground.py). A cell's score is the weighted sum of its cues' z-scores against
    that cell's baseline (0 typical, 1 its rare normal high), motion cues and scene cues apart.
    The frame's score is its most anomalous region: the best mean of motion scores over `region` x
    `region` neighbouring cells (about one walker), or the best single cell of scene scores (a bag
    is smaller than a walker). Unlike a mean of the k highest cells, it does not grow with the
    number of ordinary walkers in view.
    """

    def __init__(self, net: SpacetimeNet, cell_edges: tuple[Tensor, Tensor, Tensor, Tensor],
                 region: int, context: list[int], last: int, scene_channels: int = 0,
                 size: tuple[int, int] = (1, 1), scene_times: tuple[float, float, float] = (3.0, 120.0, 1.0)
                 ) -> None:
        super().__init__()
        self.net = net
        self.region = region
        self.context = context
        self.last = last
        self.spatial_channels = net.spatial_channels  # features[:, :Cs] spatial, [:, Cs:] time slices
        # The network casts its inputs to its weights' precision and returns float32; errors are
        # measured in float32, so the network alone may run in half precision.
        self.half_ready = True
        self.motion_channels = net.motion_channels
        self.scene_channels = scene_channels
        self.scene_times = list(scene_times)  # learn, adapt, still seconds: detect/foreground.py
        self.first_output = net.first_output
        self.net_channels = net.in_channels
        y0, y1, x0, x1 = cell_edges
        self.register_buffer("y0", y0.long())
        self.register_buffer("y1", y1.long())
        self.register_buffer("x0", x0.long())
        self.register_buffer("x1", x1.long())
        rows, cols, k = int(y0.numel()), int(x0.numel()), len(CUES)
        self.register_buffer("center", torch.zeros(k, rows, cols))  # z = (cue - center) / scale
        self.register_buffer("scale", torch.ones(k, rows, cols))
        self.register_buffer("weights", torch.tensor([1.0] + [0.0] * (k - 1)))  # cell score = sum w z
        self.register_buffer("static", torch.tensor([float(s) for s in STATIC]))
        self.register_buffer("calibration", torch.zeros(4))  # see offline.fit.fit_tail: a, beta, floor, fps
        # 0 where normal footage moved that way at that cell, up to 1 where it never did
        self.register_buffer("heading_weight", torch.zeros(HEADING_BINS, rows, cols))
        self.register_buffer("dwell_mask", torch.ones(rows, cols))  # 0: a cell dwell never counts in
        height, width = size
        self.register_buffer("background", torch.zeros(height, width))  # detect/foreground.py ScenePrior
        self.register_buffer("noise", torch.ones(height, width))

    @torch.jit.export
    def encode(self, frames: Tensor) -> Tensor:
        return self.net.encode(frames)

    @torch.jit.export
    def cell_means(self, values: Tensor) -> Tensor:
        """(B, H, W) per-pixel values -> (B, rows, cols) mean per cell, via an integral image."""
        integral = F.pad(values.cumsum(1).cumsum(2), (1, 0, 1, 0))
        total = (_corners(integral, self.y1, self.x1) - _corners(integral, self.y0, self.x1)
                 - _corners(integral, self.y1, self.x0) + _corners(integral, self.y0, self.x0))
        area = ((self.y1 - self.y0)[:, None] * (self.x1 - self.x0)[None, :]).to(values.dtype)
        return total / area

    @torch.jit.export
    def cell_max(self, values: Tensor) -> Tensor:
        """(B, H, W) per-pixel values -> (B, rows, cols) maximum per cell (cells share one size):
        down each cell's rows, then along its columns, only where cells are (a square max-pooling
        at every pixel took 150 ms for 32 frames at 192x144 on one core; this takes 1 ms)."""
        ky, kx = int(self.y1[0] - self.y0[0]), int(self.x1[0] - self.x0[0])
        down = values.index_select(1, self.y0)
        for i in range(1, ky):
            down = torch.maximum(down, values.index_select(1, self.y0 + i))
        out = down.index_select(2, self.x0)
        for j in range(1, kx):
            out = torch.maximum(out, down.index_select(2, self.x0 + j))
        return out

    @torch.jit.export
    def heading(self, flow: Tensor) -> Tensor:
        """(B, 2, rows, cols) a cell's mean flow over the window -> how fast it goes where normal
        footage did not go: its speed x the heading's unusualness there, interpolated between bins."""
        bins = self.heading_weight.shape[0]
        speed = flow.pow(2).sum(1).sqrt()
        turn = torch.atan2(flow[:, 1], flow[:, 0]) % (2 * math.pi)
        pos = turn / (2 * math.pi) * bins
        low = pos.floor().long() % bins
        frac = pos - pos.floor()
        w = self.heading_weight[None].expand(flow.shape[0], -1, -1, -1)
        at_low = w.gather(1, low[:, None])[:, 0]
        at_high = w.gather(1, ((low + 1) % bins)[:, None])[:, 0]
        return speed * ((1 - frac) * at_low + frac * at_high)

    @torch.jit.export
    def cues(self, prediction: Tensor, target: Tensor, window_flow: Tensor) -> Tensor:
        """(B, K, rows, cols) raw cues of each window's last frame (target); window_flow: (B, 2,
        rows, cols) cell mean flow over each whole window (for the heading)."""
        m, s = self.motion_channels, self.scene_channels
        a = target.shape[1] - m - s  # appearance channels of a frame
        error = (prediction - target[:, self.first_output:a + m]) ** 2
        shown = a - self.first_output  # appearance channels among the predicted ones
        zeros = torch.zeros(error.shape[0], self.y0.numel(), self.x0.numel(),
                            dtype=error.dtype, device=error.device)
        appearance = self.cell_means(error[:, :shown].mean(1)) if shown > 0 else zeros
        motion, speed, heading = zeros, zeros, zeros
        if m > 0:
            motion = self.cell_means(error[:, shown:].mean(1))
            speed = self.cell_means(target[:, a:a + m].pow(2).sum(1).sqrt())
            heading = self.heading(window_flow)
        occupancy, dwell = zeros, zeros
        if s > 0:
            occupancy = self.cell_means(target[:, a + m])
            dwell = self.cell_max(target[:, a + m + 1]) * self.dwell_mask
        return torch.stack([appearance, motion, speed, heading, occupancy, dwell], 1)

    @torch.jit.export
    def window_flow(self, frames: Tensor, windows: Tensor) -> Tensor:
        """(B, 2, rows, cols) each cell's mean flow over each window's frames, each frame's cell
        means computed once however many windows share it."""
        m = self.motion_channels
        if m == 0:
            return torch.zeros(windows.shape[0], 2, self.y0.numel(), self.x0.numel(),
                               dtype=frames.dtype, device=frames.device)
        a = frames.shape[1] - m - self.scene_channels
        rows, inverse = torch.unique(windows.flatten(), sorted=True, return_inverse=True)
        flow = frames.index_select(0, rows)[:, a:a + 2]
        cells = self.cell_means(flow.flatten(0, 1)).reshape(rows.numel(), 2, self.y0.numel(), -1)
        return cells[inverse.reshape(windows.shape)].mean(1)

    @torch.jit.export
    def score_cells(self, cell_error: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Raw cues (B, K, rows, cols) -> (cell scores, frame scores); keep (rows, cols): 1 where a
        cell counts, 0 where the operator masked it out."""
        z = (cell_error - self.center) / self.scale * self.weights[None, :, None, None]
        motion = (z * (1 - self.static)[None, :, None, None]).sum(1)
        scene = (z * self.static[None, :, None, None]).sum(1)
        r = min(self.region, motion.shape[1], motion.shape[2])
        counted = F.avg_pool2d(keep[None, None].to(motion.dtype), r, stride=1)[0, 0]
        summed = F.avg_pool2d((motion * keep)[:, None], r, stride=1)[:, 0]
        never = -1.0e4  # the score of a region or cell the operator masked out
        regions = torch.where(counted > 0, summed / counted.clamp_min(1e-6),
                              torch.full_like(summed, never))
        frame = regions.flatten(1).max(1).values
        cell = motion
        if bool((self.weights * self.static).sum() > 0):
            cell = torch.maximum(motion, scene)
            frame = torch.maximum(frame, torch.where(keep > 0, scene, torch.full_like(scene, never))
                                  .flatten(1).max(1).values)
        return cell, frame

    def forward(self, frames: Tensor, features: Tensor, windows: Tensor) -> DetectorOutput:
        """Score B windows (B, T) of indices into one run of frames (N, C, H, W) and their features."""
        series, spatial, last, target = gather_window(frames, features, windows, self.context,
                                                      self.last, self.spatial_channels)
        prediction = self.net.predict(series, spatial, last[:, :self.net_channels])
        cell_error = self.cues(prediction, target, self.window_flow(frames, windows))
        keep = torch.ones_like(self.dwell_mask)
        cell_score, frame_score = self.score_cells(cell_error, keep)
        return DetectorOutput(prediction, cell_error, cell_score, frame_score)


def _corners(integral: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """integral[:, ys[i], xs[j]] for every (i, j), as (B, len(ys), len(xs))."""
    b, stride = integral.shape[0], integral.shape[2]
    idx = (ys[:, None] * stride + xs[None, :]).reshape(-1)
    return integral.reshape(b, -1).index_select(1, idx).reshape(b, ys.numel(), xs.numel())
