"""The spacetime network: the pure nn.Module, and how it is called (windows of cached features).

Each frame enters as appearance (gray or BGR) plus, when the model uses motion, its dense flow
from the frame before (two channels, see detect/motion.py). Two branches over a window: a *spatial* branch
(2D convolution over each frame's space slices) that runs once per frame and is cached, and a
*temporal* branch (1D convolution along each location's time slice of the cached features, which
carry the flow). Their features are fused and decoded into the window's target: the next frame and
its motion. Everything is fully convolutional over the whole window: no per-patch passes.

How the model is called is written once, here: `gather_window` cuts windows out of a run of
frames and their cached features; training, scoring, export and load all go through it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SpacetimeNet(nn.Module):
    """Predicts a window's target (the last frame and its flow, or its flow alone) from the cached
    features of T-1 frames.

    in_channels counts every input channel (appearance + motion); motion_channels of them, the
    last ones, are flow: their error and magnitude are separate cues.
    """

    def __init__(self, window: int, channels: int = 32, temporal_channels: int = 16,
                 residual: bool = True, in_channels: int = 1, motion_channels: int = 0,
                 motion_from_appearance: bool = False) -> None:
        super().__init__()
        c, ct, steps = channels, temporal_channels, window - 1
        self.in_channels = in_channels
        self.motion_channels = motion_channels
        # motion_from_appearance: the network sees appearance only and predicts the target's motion
        # (what a normal thing that looks like this moves like); otherwise it sees every channel and
        # predicts them all.
        self.first_output = in_channels - motion_channels if motion_from_appearance else 0
        self.seen_channels = in_channels - motion_channels if motion_from_appearance else in_channels
        self.residual = residual and not motion_from_appearance
        outputs = in_channels - self.first_output
        self.feature_channels = c + ct
        self.spatial = nn.Sequential(  # per frame: stride 4, cached by the live path
            nn.Conv2d(self.seen_channels, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
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
            nn.Conv2d(c, 16 * outputs, 3, padding=1),
            nn.PixelShuffle(4),
        )
        self.spatial_channels = c

    def encode(self, frames: Tensor) -> Tensor:
        """(N, C, H, W) frames -> (N, Cs + Ct, H/4, W/4) per-frame features, reusable across windows.

        Runs in the weights' precision (half precision when the network was converted with .half());
        frames, errors and scores stay float32 around it."""
        s = self.spatial(frames[:, :self.seen_channels].to(self.to_time.weight.dtype))
        return torch.cat([s, self.to_time(s)], dim=1)

    def predict(self, series: Tensor, spatial: Tensor, last: Tensor) -> Tensor:
        """series (B, T-1, Ct, h, w): the context frames' time-slice features; spatial (B, Cs, h, w):
        the newest context frame's spatial features; last (B, C, H, W): that frame's pixels."""
        b, steps, _, h, w = series.shape
        dtype = self.to_time.weight.dtype
        series, spatial = series.to(dtype).permute(0, 2, 1, 3, 4), spatial.to(dtype)  # (B, Ct, T-1, h, w)
        motion = torch.cat([torch.zeros_like(series[:, :, :1]), series[:, :, 1:] - series[:, :, :-1]], 2)
        slices = torch.cat([series, motion], 1).reshape(b, -1, steps, h * w)
        temporal = self.temporal(slices).reshape(b, -1, h, w)
        out = self.decode(torch.cat([spatial, temporal], 1)).float()
        if self.residual:
            out = out + last[:, self.first_output:]
        return out


def gather_window(frames: Tensor, features: Tensor, windows: Tensor, context: list[int], last: int,
                  spatial_channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The model's inputs for B windows over one run of frames.

    frames (N, C, H, W) and features (N, F, h, w) of consecutive frames; windows (B, T) indices into
    them; context: the window positions the model sees; last: the position its residual starts from.
    Returns series (B, T-1, Ct, h, w), spatial (B, Cs, h, w), last frame and target frame (B, C, H, W).
    Only the features each branch uses are copied.
    """
    ctx = windows[:, context]
    series = features[:, spatial_channels:][ctx]
    spatial = features[:, :spatial_channels][windows[:, context[-1]]]
    return series, spatial, frames[windows[:, last]], frames[windows[:, -1]]


def context_offsets(window: int, pretext: str) -> tuple[list[int], int]:
    """Which window positions feed the model as context, and which one is the residual base.

    "predict": frames t-T+1..t-1 predict frame t (t itself never seen by the model);
    "reconstruct": frames t-T+2..t, including t, reconstruct frame t;
    "motion": frames t-T+2..t, appearance only, predict frame t's motion.
    """
    if pretext == "predict":
        return list(range(window - 1)), window - 2
    return list(range(1, window)), window - 1
