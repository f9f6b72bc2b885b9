"""The spacetime network and the scoring module exported with it.

Two branches over a window: a *spatial* branch (2D convolution over each frame's space slices) that
runs once per frame and is cached, and a *temporal* branch (1D convolution along each location's time
slice of the cached features). Their features are concatenated and decoded into the held-out frame.
Everything is fully convolutional over the whole window: no per-patch passes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class DetectorOutput(NamedTuple):
    prediction: Tensor  # (B, 1 or 3, H, W) the model's guess of the target frame
    cell_error: Tensor  # (B, rows, cols) mean squared error per space slice
    cell_score: Tensor  # (B, rows, cols) error against the per-cell baseline (0 ~ normal)
    frame_score: Tensor  # (B,) mean of the top-k cell scores


class SpacetimeNet(nn.Module):
    """Predicts (or reconstructs) a window's target frame from the cached features of T-1 frames."""

    def __init__(self, window: int, channels: int = 32, temporal_channels: int = 16,
                 residual: bool = True, in_channels: int = 1) -> None:
        super().__init__()
        c, ct, steps = channels, temporal_channels, window - 1
        self.residual = residual
        self.feature_channels = c + ct
        self.spatial = nn.Sequential(  # per frame: stride 4, cached by the live path
            nn.Conv2d(in_channels, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.to_time = nn.Conv2d(c, ct, 1)  # per frame too: what each location feeds its time slice
        # Time slices are laid out as (B, channels, time, locations): a (k, 1) kernel is a 1D
        # convolution along time, shared by every location. Input: features and their differences.
        self.temporal = nn.Sequential(
            nn.Conv2d(2 * ct, ct, (3, 1), padding=(1, 0)), nn.ReLU(inplace=True),
            nn.Conv2d(ct, ct, (3, 1), padding=(1, 0)), nn.ReLU(inplace=True),
            nn.Conv2d(ct, 2 * ct, (steps, 1)), nn.ReLU(inplace=True),  # collapses time
        )
        self.decode = nn.Sequential(  # fused spatial + temporal features -> 4x4 pixels per location
            nn.Conv2d(c + 2 * ct, c, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, 16 * in_channels, 3, padding=1),
            nn.PixelShuffle(4),
        )
        self.spatial_channels = c

    def encode(self, frames: Tensor) -> Tensor:
        """(N, 1 or 3, H, W) frames -> (N, C + Ct, H/4, W/4) per-frame features, reusable across windows."""
        s = self.spatial(frames)
        return torch.cat([s, self.to_time(s)], dim=1)

    def predict(self, series: Tensor, spatial: Tensor, last: Tensor) -> Tensor:
        """series (B, T-1, Ct, h, w): the context frames' time-slice features; spatial (B, C, h, w):
        the newest context frame's spatial features; last (B, 1 or 3, H, W): that frame's pixels."""
        b, steps, _, h, w = series.shape
        series = series.permute(0, 2, 1, 3, 4)  # (B, Ct, T-1, h, w)
        motion = torch.cat([torch.zeros_like(series[:, :, :1]), series[:, :, 1:] - series[:, :, :-1]], 2)
        slices = torch.cat([series, motion], 1).reshape(b, -1, steps, h * w)
        temporal = self.temporal(slices).reshape(b, -1, h, w)
        out = self.decode(torch.cat([spatial, temporal], 1))
        if self.residual:
            out = out + last
        return out


class SpacetimeDetector(nn.Module):
    """Network + per-cell baseline + calibration, exported together so they cannot drift apart."""

    def __init__(self, net: SpacetimeNet, cell_edges: tuple[Tensor, Tensor, Tensor, Tensor],
                 top_k: int) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k
        self.spatial_channels = net.spatial_channels  # features[:, :C] spatial, [:, C:] time slices
        y0, y1, x0, x1 = cell_edges
        self.register_buffer("y0", y0.long())
        self.register_buffer("y1", y1.long())
        self.register_buffer("x0", x0.long())
        self.register_buffer("x1", x1.long())
        rows, cols = int(y0.numel()), int(x0.numel())
        self.register_buffer("center", torch.zeros(rows, cols))  # baseline: score = (e - center)/scale
        self.register_buffer("scale", torch.ones(rows, cols))
        self.register_buffer("calibration", torch.zeros(4))  # see train.fit_tail: a, beta, floor, fps

    @torch.jit.export
    def encode(self, frames: Tensor) -> Tensor:
        return self.net.encode(frames)

    @torch.jit.export
    def cell_errors(self, error: Tensor) -> Tensor:
        """(B, C, H, W) per-pixel error -> (B, rows, cols) mean per cell, via an integral image."""
        integral = torch.nn.functional.pad(error.mean(1).cumsum(1).cumsum(2), (1, 0, 1, 0))
        total = (_corners(integral, self.y1, self.x1) - _corners(integral, self.y0, self.x1)
                 - _corners(integral, self.y1, self.x0) + _corners(integral, self.y0, self.x0))
        area = ((self.y1 - self.y0)[:, None] * (self.x1 - self.x0)[None, :]).to(error.dtype)
        return total / area

    def forward(self, series: Tensor, spatial: Tensor, last: Tensor, target: Tensor) -> DetectorOutput:
        prediction = self.net.predict(series, spatial, last)
        cell_error = self.cell_errors((prediction - target) ** 2)
        cell_score = (cell_error - self.center) / self.scale
        k = min(self.top_k, cell_score.shape[1] * cell_score.shape[2])
        frame_score = cell_score.flatten(1).topk(k, dim=1).values.mean(1)
        return DetectorOutput(prediction, cell_error, cell_score, frame_score)


def _corners(integral: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """integral[:, ys[i], xs[j]] for every (i, j), as (B, len(ys), len(xs))."""
    b, stride = integral.shape[0], integral.shape[2]
    idx = (ys[:, None] * stride + xs[None, :]).reshape(-1)
    return integral.reshape(b, -1).index_select(1, idx).reshape(b, ys.numel(), xs.numel())
