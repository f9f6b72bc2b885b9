"""Writes a model directory: the TorchScript detector (network + baseline + calibration) and metadata.json.

The metadata records what the model expects (working size, window, grid); manifest.sign then lists
every file's checksum and seals the metadata, so a loader can refuse a directory that does not fit,
or was edited, before running anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from stream_detector.model.detector import SpacetimeDetector

FORMAT = "stream-detector-model"
# 3: forward(frames, features, windows); motion channels; per-cue baselines. 4: scene channels and
# cues, heading, region frame score, stabilised flow.
FORMAT_VERSION = 4
MODEL_FILE = "model.pt"
METADATA_FILE = "metadata.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(detector: SpacetimeDetector, metadata: dict[str, Any], out_dir: Path) -> Path:
    """Script the detector, check it against eager on a random window, and write the directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = detector.cpu().eval()
    with warnings.catch_warnings():  # TorchScript is our deployment format, deprecated or not
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(detector)
    _check_same(detector, scripted, metadata)
    model_path = out_dir / MODEL_FILE
    tmp = model_path.with_suffix(".pt.tmp")
    scripted.save(str(tmp))
    os.replace(tmp, model_path)
    meta = dict(metadata)
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    tmp_meta = out_dir / (METADATA_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp_meta, out_dir / METADATA_FILE)
    from stream_detector.model.manifest import sign  # not at the top: manifest imports this module

    sign(out_dir)  # the manifest covers model.pt, every other file and every metadata field
    return out_dir


def probe_input(detector: torch.nn.Module, meta: dict[str, Any], device: torch.device,
                random: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window of the declared size: (frames, features, windows) as forward takes them."""
    width, height = meta["working_size"]
    window = int(meta["window"])
    channels = ((3 if meta.get("color") else 1) + int(detector.motion_channels)
                + int(getattr(detector, "scene_channels", 0)))
    if random:
        gen = torch.Generator().manual_seed(0)
        frames = (torch.rand(window, channels, height, width, generator=gen) * 2 - 1).to(device)
    else:
        frames = torch.zeros(window, channels, height, width, device=device)
    return frames, detector.encode(frames), torch.arange(window, device=device)[None]


@torch.no_grad()
def _check_same(eager: SpacetimeDetector, scripted: torch.jit.ScriptModule, meta: dict[str, Any]) -> None:
    args = probe_input(eager, meta, torch.device("cpu"), random=True)
    a = eager(*args)
    b = scripted(*args)
    if not torch.allclose(a.cell_score, b.cell_score, rtol=1e-4, atol=1e-4):
        raise RuntimeError("TorchScript export disagrees with the eager model")
