"""Models from the field: fit straight from a live camera (its normal footage recorded first, spread
over the span asked for, then fitted as files are), and one model per rule of a camera that has
several (`fit --split`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from stream_detector.capture import expand_sources
from stream_detector.config import CameraConfig, DetectorConfig, ModelChoice
from stream_detector.errors import ConfigError
from stream_detector.offline.fit import FitReport, fit
from stream_detector.offline.record import Recording, Window, record
from stream_detector.offline.split import split_footage


def split_models(cam: CameraConfig, where: str) -> tuple[ModelChoice, ...]:
    """The camera's models for `fit --split`: at least two, or a ConfigError naming `where`."""
    if len(cam.models) < 2:
        raise ConfigError(f"{where}.models: --split needs a camera with two or more models")
    return cam.models


def fit_models(files: list[Path], out: Path, cfg: DetectorConfig, device: torch.device,
               split: tuple[ModelChoice, ...] = (), where: str = "") -> list[tuple[str, FitReport]]:
    """One model fitted on all `files` into `out`; with `split` (a camera's models), one per model
    into `out/NAME`, each on the files its rule selects (all are sorted before any is fitted)."""
    if not split:
        return [("", fit(files, out, cfg, device))]
    parts = split_footage(expand_sources(files), split, where)
    return [(c.name, fit(parts[c.name], out / c.name, cfg, device)) for c in split]


def fit_from_camera(cam: CameraConfig, name: str, windows: list[Window], fps: float, out: Path,
                    cfg: DetectorConfig, device: torch.device, footage: Path | None = None,
                    split: tuple[ModelChoice, ...] = (),
                    where: str = "") -> tuple[Recording, list[tuple[str, FitReport]]]:
    """Record the camera's `windows` (into `footage`, else a temporary folder removed afterwards),
    then fit as from files."""
    with tempfile.TemporaryDirectory(prefix="stream-detector-footage-") as tmp:
        recording = record(cam, name, footage or Path(tmp), windows, fps)
        return recording, fit_models(list(recording.files), out, cfg, device, split, where)
